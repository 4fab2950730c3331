"""`schemagate serve`: wire config, TLS, version sources and the app, and run until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import uvloop
from aiohttp import web

from webhook.app import State, make_server
from webhook.config import Config, StartupError
from webhook.decide import excluded
from webhook.limits import Limits
from webhook.lookup import Lookups
from webhook.metrics import Metrics
from webhook.sources import open_source
from webhook.tls import REFUSALS, Refusal, ServingTLS

if TYPE_CHECKING:
    from webhook.certsync import CertSecret

log = logging.getLogger(__name__)

_Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


WAIT_POLL_SECONDS = 0.5
# How long a refused client gets to read its TLS alert before the connection closes.
ALERT_LINGER_SECONDS = 1.0
TIMER_SLACK_SECONDS = 0.01


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
    tls_wait: float = 0.0  # seconds the TLS files may take to appear (a mounted Secret)
    grace_seconds: float = 15.0
    reload_seconds: float = 1.0
    limits: Limits = field(default_factory=Limits)


def run(options: ServeOptions) -> None:
    """`serve` on uvloop, which costs less CPU per review than asyncio's loop (bench/)."""
    # The JSON log lines show no thread, process or caller: skip collecting them for every
    # record (the logging HOWTO, "Optimization"); a measurable share of each admission.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(options))


async def serve(options: ServeOptions) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting and finish in-flight requests."""
    metrics = Metrics()
    if options.cert_secret is not None:
        # The Kubernetes client is imported only here: without --cert-secret the server
        # never talks to the API server, and the client is most of a bare server's memory.
        from webhook.certsync import sync_once

        await sync_once(options.cert_secret, options.tls_cert.parent)
    else:
        await _wait_for_files(options.tls_cert, options.tls_key, options.tls_wait)
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
    limits = options.limits
    state = State(options.config, lookups, metrics, tls, excluded(options.namespace), limits)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    server = make_server(
        state,
        keepalive_timeout=limits.idle_seconds,
        # After an early answer (413, 408) read what is left of the body this long, so
        # the client sees the answer rather than a reset.
        lingering_time=1.0,
        # The API server never compresses a review (webhook.app refuses Content-Encoding).
        auto_decompress=False,
    )
    # Around every request of every connection (each copies the handler when it opens).
    server.request_handler = _tracked(server.request_handler)
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=options.grace_seconds)
    await runner.setup()
    watcher = asyncio.create_task(
        tls.watch(options.reload_seconds, lambda result: metrics.cert_reloads.labels(result).inc())
    )
    tasks = [watcher]
    if options.cert_secret is not None:
        from webhook.certsync import sync_forever

        tasks.append(
            asyncio.create_task(sync_forever(options.cert_secret, options.tls_cert.parent))
        )
    try:
        site = GuardedSite(runner, options.host, options.port, tls.context, limits)
        await site.start()
        log.info(
            "serving",
            extra={
                "address": f"https://{options.host}:{options.port}",
                "databases": sorted(options.config.databases),
            },
        )
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


async def _wait_for_files(cert: Path, key: Path, wait: float) -> None:
    """Until both files exist, for at most `wait` seconds: a Secret volume marked optional
    is mounted empty and filled in by kubelet once the bootstrap has created the Secret."""
    deadline = asyncio.get_running_loop().time() + wait
    missing = [path for path in (cert, key) if not path.is_file()]
    waiting = bool(missing) and wait > 0
    if waiting:
        log.info(
            "waiting up to %g s for %s: not there yet (a mounted Secret the certificate "
            "bootstrap has not created, or kubelet has not refreshed yet)",
            wait,
            " and ".join(map(str, missing)),
        )
    while missing:
        if asyncio.get_running_loop().time() >= deadline:
            waited = f" after waiting {wait:g} s" if wait > 0 else ""
            raise StartupError(f"{missing[0]}: no such file{waited}")
        await asyncio.sleep(WAIT_POLL_SECONDS)
        missing = [path for path in (cert, key) if not path.is_file()]
    if waiting:
        log.info("serving certificate files found", extra={"cert": str(cert)})


class GuardedSite(web.BaseSite):
    """A TLS listener that enforces `Limits`, in place of aiohttp's TCPSite.

    TCPSite hands the socket to `loop.create_server`, which accepts without limit, gives
    each TLS handshake 60 s and lets a client take as long as it likes over its request
    headers. Here one task per listening socket accepts only while a slot is free, each
    accepted socket gets `handshake_seconds` to finish TLS, and `_Guard` drops a
    connection that has not delivered complete request headers in time.

    No SO_REUSEPORT: a second process on the same port is no way to restart without
    loss, as Linux resets the connections queued on a listener that closes.
    """

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        limits: Limits,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=limits.backlog)
        self._host, self._port, self._limits = host, port, limits
        self._slots = asyncio.Semaphore(limits.max_connections)
        self._sockets: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return f"https://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        try:
            found = await loop.getaddrinfo(
                self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            for family, kind, proto, _, address in dict.fromkeys(found):
                sock = socket.socket(family, kind, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(self._backlog)
                sock.setblocking(False)
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {self._host}:{self._port}: {exc.strerror or exc}"
            ) from None
        for sock in self._sockets:
            self._spawn(self._accept(sock))

    async def stop(self) -> None:
        """Stop accepting (new connections are refused) and drop unfinished handshakes."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sock in self._sockets:
            sock.close()
        await super().stop()

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:
                # Out of file descriptors or similar: wait as asyncio's own server does.
                self._slots.release()
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(1)
                continue
            except BaseException:
                self._slots.release()
                raise
            self._spawn(self._open(conn))

    async def _open(self, conn: socket.socket) -> None:
        server = self._runner.server
        assert server is not None
        guard = _Guard(server(), self._limits.header_seconds, self._slots.release)
        loop = asyncio.get_running_loop()
        refusal = Refusal(conn)
        REFUSALS.set(refusal)  # this task's context: the connection's callbacks copy it
        try:
            await loop.connect_accepted_socket(
                lambda: guard,
                conn,
                ssl=self._ssl_context,
                ssl_handshake_timeout=self._limits.handshake_seconds,
            )
        except BaseException as exc:
            # The handshake failed, timed out, or the server is stopping: aiohttp never
            # saw this connection, so free its slot here.
            try:
                if refusal.held is not None and isinstance(exc, Exception):
                    await _send_alert(loop, refusal.held, refusal.alert)
            finally:
                guard.release()
                conn.close()
                if refusal.held is not None:
                    refusal.held.close()
            if not isinstance(exc, Exception):
                raise
            log.debug("TLS handshake failed: %s", exc)


async def _send_alert(loop: asyncio.AbstractEventLoop, conn: socket.socket, alert: bytes) -> None:
    """Send a refused client its alert, then close without a reset: a close with unread
    data (the rest of its handshake) would reset the connection and lose the alert."""
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(ALERT_LINGER_SECONDS):
            await loop.sock_sendall(conn, alert)
            conn.shutdown(socket.SHUT_WR)
            while await loop.sock_recv(conn, 4096):
                pass


class _Guard(asyncio.Protocol):
    """Between TLS and aiohttp's protocol: a deadline on request headers, and the slot.

    Armed when TLS is established and at the first byte of each later request, disarmed
    when aiohttp starts handling a request (`_tracked`); idle keep-alive
    connections are aiohttp's (`Limits.idle_seconds`). Arming sets a deadline; one
    timer per connection checks it when due and sets itself for a later deadline, so a
    request costs no timer of its own.
    """

    def __init__(
        self, inner: asyncio.Protocol, header_seconds: float, release: Callable[[], None]
    ) -> None:
        self._inner = inner
        self._header_seconds = header_seconds
        self._release: Callable[[], None] | None = release
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # loop time by which headers must be in
        self._busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport is a Transport in all but its class.
        self._transport = cast(asyncio.Transport, transport)
        self._arm()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.release()
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._busy and self._deadline is None:
            self._arm()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def request_started(self) -> None:
        self._busy = True
        self._disarm()

    def request_finished(self) -> None:
        self._busy = False

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self._header_seconds
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._expire)

    def _disarm(self) -> None:
        self._deadline = None

    def _expire(self) -> None:
        self._timer = None
        if self._busy or self._transport is None or self._deadline is None:
            return
        loop = asyncio.get_running_loop()
        # Armed again since this timer was set. (Timers may fire a little early, as
        # uvloop counts in milliseconds: within the slack this deadline is the one due.)
        if loop.time() < self._deadline - TIMER_SLACK_SECONDS:
            self._timer = loop.call_at(self._deadline, self._expire)
            return
        peer = self._transport.get_extra_info("peername")
        log.info(
            "dropped a connection: no complete request headers within %g s",
            self._header_seconds,
            extra={"peer": str(peer)},
        )
        # abort, not close: a client this slow would also stall a TLS close_notify.
        self._transport.abort()


def _tracked(handler: _Handler) -> _Handler:
    """`handler`, telling the connection's `_Guard` while a request is being handled.

    Wrapped around the server's handler rather than added as a middleware: with any
    middleware aiohttp also runs its own current-app middleware around every request, two
    coroutines and a context manager more per admission.
    """

    async def tracked(request: web.BaseRequest) -> web.StreamResponse:
        transport = request.transport
        guard = transport.get_protocol() if transport is not None else None
        if not isinstance(guard, _Guard):
            return await handler(request)
        guard.request_started()
        try:
            return await handler(request)
        finally:
            guard.request_finished()

    return tracked
