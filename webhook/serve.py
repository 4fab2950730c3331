"""`schemagate serve`: wire config, TLS, version sources and the app, and run until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from webhook.app import State, make_app
from webhook.certsync import CertSecret, sync_forever, sync_once
from webhook.config import Config
from webhook.lookup import Lookups
from webhook.metrics import Metrics
from webhook.sources import open_source
from webhook.tls import ServingTLS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    config: Config
    tls_cert: Path
    tls_key: Path
    host: str = "0.0.0.0"
    port: int = 8443
    client_ca: Path | None = None
    namespace: str | None = None  # the webhook's own namespace, never gated or mutated
    cert_secret: CertSecret | None = None  # bootstrap the TLS files from this Secret
    grace_seconds: float = 15.0
    reload_seconds: float = 1.0


async def serve(options: ServeOptions, ready: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting and finish in-flight requests."""
    metrics = Metrics()
    if options.cert_secret is not None:
        await sync_once(options.cert_secret)
    tls = ServingTLS(
        options.tls_cert,
        options.tls_key,
        options.client_ca,
        on_load=lambda expires: metrics.cert_expiry.set(expires.timestamp()),
    )
    timeout = options.config.lookup_timeout
    sources = {name: open_source(db, timeout) for name, db in options.config.databases.items()}
    lookups = Lookups(sources, observe=metrics.observe_lookup)
    lookups.start()
    excluded = frozenset(("kube-system", *([options.namespace] if options.namespace else [])))
    state = State(options.config, lookups, metrics, tls, excluded)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    runner = web.AppRunner(
        make_app(state),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=options.grace_seconds,
    )
    await runner.setup()
    watcher = asyncio.create_task(
        tls.watch(options.reload_seconds, lambda result: metrics.cert_reloads.labels(result).inc())
    )
    tasks = [watcher]
    if options.cert_secret is not None:
        tasks.append(asyncio.create_task(sync_forever(options.cert_secret)))
    try:
        site = web.TCPSite(runner, options.host, options.port, ssl_context=tls.context)
        await site.start()
        log.info(
            "serving",
            extra={
                "address": f"https://{options.host}:{options.port}",
                "databases": sorted(options.config.databases),
            },
        )
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("shutting down: no new connections, finishing in-flight requests")
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Closes the listener first, then waits up to shutdown_timeout for handlers.
        await runner.cleanup()
        lookups.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("stopped")
