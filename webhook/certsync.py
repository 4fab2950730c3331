"""Certificate rounds in the cluster: `schemagate certs bootstrap [--every]` and the
in-process option `schemagate serve --cert-secret`.

By default (manifests/base) the rounds run in a Deployment of their own,
`schemagate certs bootstrap --every 600` under a service account that may write the TLS
Secret and the caBundle; the serving pods only mount the Secret and reload it, so their
token, if stolen, cannot rewrite the webhook. In-process, the server ensures the Secret
and caBundle before it listens, writes the files the TLS reloader polls, and re-checks
periodically, so a renewal or CA rotation made by any replica reaches every replica
within one interval; its pods then hold those rights themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from certs.bootstrap import BootstrapError, BootstrapResult, bootstrap, load_kube_client
from certs.files import write_files

log = logging.getLogger(__name__)

# Shorter than certs.rotation.SETTLE, so every replica has reloaded before a CA rotation
# moves on to its next phase.
INTERVAL_SECONDS = 600.0
RETRY_SECONDS = 10.0
UNCHANGED = "nothing to do: the Secret and caBundle are valid"


@dataclass(frozen=True)
class CertSecret:
    namespace: str
    service: str
    secret: str
    webhook_configuration: str
    kubeconfig: str | None = None
    ips: tuple[str, ...] = ()
    rotate_ca: bool = False


async def ensure(target: CertSecret) -> BootstrapResult:
    """One bootstrap round: the Secret and the caBundle are valid afterwards."""
    async with await load_kube_client(target.kubeconfig) as api:
        return await bootstrap(
            api,
            namespace=target.namespace,
            service=target.service,
            secret=target.secret,
            webhook_configuration=target.webhook_configuration,
            ips=target.ips,
            rotate_ca=target.rotate_ca,
        )


async def sync_once(target: CertSecret, out_dir: Path) -> None:
    """Ensure the Secret and caBundle, and write ca.crt, tls.crt and tls.key to out_dir."""
    result = await ensure(target)
    write_files(out_dir, result.ca_bundle, result.serving)
    for change in result.changes:
        log.info("certificates: %s", change)


async def sync_forever(
    target: CertSecret, out_dir: Path, interval: float = INTERVAL_SECONDS
) -> None:
    """The in-process rounds after the first (which `serve` runs before it listens)."""
    await asyncio.sleep(interval)
    await _rounds(lambda: sync_once(target, out_dir), interval)


async def renew_forever(target: CertSecret, interval: float) -> None:
    """`certs bootstrap --every`: a round now, then every `interval` seconds."""

    async def round_() -> None:
        result = await ensure(target)
        for change in result.changes or (UNCHANGED,):
            log.info("certificates: %s", change)

    await _rounds(round_, interval)


async def _rounds(round_: Callable[[], Awaitable[None]], interval: float) -> None:
    while True:
        try:
            await round_()
            await asyncio.sleep(interval)
        except BootstrapError as exc:
            # The current certificate stays in use. Soon again, not a whole interval
            # later: at install the webhook configuration may not exist yet.
            log.error("certificate bootstrap failed: %s", exc)
            await asyncio.sleep(min(interval, RETRY_SECONDS))
