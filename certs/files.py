"""Certificate files on disk: what `schemagate serve --tls-cert/--tls-key` reads."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from certs.issue import KeyPair, issue_ca, issue_serving
from certs.rotation import CA_COMMON_NAME


def write_files(out_dir: Path, ca_pem: bytes, serving: KeyPair) -> None:
    """Write ca.crt (the CA bundle), tls.crt and tls.key (mode 0600) into `out_dir`.

    Each file is replaced atomically, so a reader polling them never sees half a file;
    unchanged files are left alone. Two files cannot change at once, though: a reader that
    catches tls.crt and tls.key mid-update must keep serving its old pair when the new one
    does not load (the key does not match) and try again at the next poll.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    _replace(out_dir / "ca.crt", ca_pem, 0o644)
    _replace(out_dir / "tls.key", serving.key_pem, 0o600)
    _replace(out_dir / "tls.crt", serving.cert_pem, 0o644)


def issue_to_dir(out_dir: Path, dns_names: Sequence[str], ips: Sequence[str]) -> None:
    """`schemagate certs issue`: a new CA and a serving cert for the names, as files."""
    now = datetime.now(UTC)
    ca = issue_ca(CA_COMMON_NAME, now=now)
    write_files(out_dir, ca.cert_pem, issue_serving(ca, dns_names, ips, now=now))


def _replace(path: Path, content: bytes, mode: int) -> None:
    if path.exists() and path.read_bytes() == content:
        return
    # mkstemp creates the file 0600, so the key is never readable by others, even briefly.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
