"""In-process certificate bootstrap: keep the serving files in step with the cluster Secret.

Chosen over an init container because a Secret volume for a Secret that does not exist
yet blocks the pod from starting, and the kubelet refreshes mounted Secrets only after
up to a minute. Here the server ensures the Secret and caBundle before it listens, writes
the files the TLS reloader polls, and re-checks periodically, so a renewal or CA
rotation made by any replica reaches every replica within one interval.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from certs.bootstrap import BootstrapError, BootstrapResult, bootstrap, load_kube_client
from certs.files import write_files

log = logging.getLogger(__name__)

# Shorter than certs.rotation.SETTLE, so every replica has reloaded before a CA rotation
# moves on to its next phase.
INTERVAL_SECONDS = 600.0


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
    while True:
        await asyncio.sleep(interval)
        try:
            await sync_once(target, out_dir)
        except BootstrapError as exc:
            # The current certificate stays in use; the next round tries again.
            log.error("certificate bootstrap failed: %s", exc)
