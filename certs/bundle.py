"""CA bundles (a webhook's `caBundle`, a `ca.crt`): several PEM certificates in a row.

Pure. A bundle read from the cluster is outside input, so splitting is lenient: blocks
that do not parse are skipped, and the rest is re-encoded canonically before comparing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def split_pem(bundle: bytes) -> list[bytes]:
    """The certificates of a bundle, each re-encoded as canonical PEM; junk is skipped."""
    certs = []
    for block in _BLOCK.findall(bundle):
        try:
            cert = x509.load_pem_x509_certificate(block)
        except ValueError:
            continue
        certs.append(cert.public_bytes(Encoding.PEM))
    return certs


def join_pem(bundles: Iterable[bytes], *, now: datetime) -> bytes:
    """One bundle of every certificate in `bundles`, in order, without duplicates or the
    expired (an expired CA verifies nothing and only makes the bundle grow)."""
    kept: list[bytes] = []
    for pem in (pem for bundle in bundles for pem in split_pem(bundle)):
        if pem not in kept and x509.load_pem_x509_certificate(pem).not_valid_after_utc > now:
            kept.append(pem)
    return b"".join(kept)


def contains(bundle: bytes, cert_pem: bytes) -> bool:
    """Whether `bundle` holds the (first) certificate of `cert_pem`."""
    wanted = split_pem(cert_pem)[:1]
    return bool(wanted) and wanted[0] in split_pem(bundle)
