"""What one bootstrap round must do, decided from what it read: a pure state machine.

The Secret is the only state. Its keys:

    ca.crt, ca.key              the CA that signs tls.crt
    tls.crt, tls.key            the serving certificate
    ca-next.crt, ca-next.key    a new CA, already in caBundle, not signing yet
    ca-previous.crt             the CA that signed before the last switch, still in caBundle

Phases, and what moves a round from one to the next:

    (no usable CA)  issue a CA and a serving cert                          -> STEADY
    STEADY    bundle ca. The CA is past two thirds of its life, or
              rotate_ca: issue the next CA                                  -> PENDING
    PENDING   bundle ca+next. Every webhook trusts both and `settle` has
              passed since: next signs a new serving cert, ca is previous  -> RETIRING
    RETIRING  bundle previous+ca. The serving cert signed by ca is `settle`
              old, so every replica serves it: drop previous                -> STEADY

A CA therefore signs nothing the API server does not trust yet, and stops being trusted
only after nothing it signed is served. In every phase the serving cert is renewed by
the current CA when its names are wrong or less than a third of its life is left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from certs.bundle import contains, join_pem
from certs.issue import (
    KeyPair,
    issue_ca,
    issue_serving,
    issued_at,
    key_matches,
    needs_renewal,
    not_after,
    renew_after,
)

CA_COMMON_NAME = "schemagate-ca"
# Longer than the kubelet takes to refresh a mounted Secret (~1-2 min) and than a
# replica's refresh interval (10 min), so every replica has reloaded before the next step.
SETTLE = timedelta(minutes=15)
KEYS = ("ca.crt", "ca.key", "tls.crt", "tls.key", "ca-next.crt", "ca-next.key", "ca-previous.crt")


class Phase(StrEnum):
    STEADY = "steady"
    PENDING = "pending"
    RETIRING = "retiring"


@dataclass(frozen=True)
class Certs:
    ca: KeyPair
    serving: KeyPair
    next_ca: KeyPair | None = None
    previous_ca: bytes | None = None

    @property
    def phase(self) -> Phase:
        if self.next_ca is not None:
            return Phase.PENDING
        return Phase.RETIRING if self.previous_ca is not None else Phase.STEADY

    def bundle(self, now: datetime) -> bytes:
        """Every CA the API server must trust in this phase."""
        next_cert = self.next_ca.cert_pem if self.next_ca else b""
        return join_pem([self.previous_ca or b"", self.ca.cert_pem, next_cert], now=now)

    def data(self) -> dict[str, bytes]:
        data = {
            "ca.crt": self.ca.cert_pem,
            "ca.key": self.ca.key_pem,
            "tls.crt": self.serving.cert_pem,
            "tls.key": self.serving.key_pem,
        }
        if self.next_ca is not None:
            data |= {"ca-next.crt": self.next_ca.cert_pem, "ca-next.key": self.next_ca.key_pem}
        if self.previous_ca is not None:
            data["ca-previous.crt"] = self.previous_ca
        return data


@dataclass(frozen=True)
class Plan:
    certs: Certs
    secret_data: dict[str, bytes] | None  # the Secret's new data; None when it is current
    bundle: bytes  # the caBundle every webhook must carry
    patch_webhooks: tuple[int, ...]  # indexes of the webhooks whose caBundle differs
    reasons: tuple[str, ...]  # why anything changes, one phrase each


def plan(
    secret: Mapping[str, bytes] | None,
    bundles: Sequence[bytes],
    *,
    now: datetime,
    dns_names: Sequence[str],
    ips: Sequence[str] = (),
    rotate_ca: bool = False,
    settle: timedelta = SETTLE,
) -> Plan:
    """The next step from the Secret's data and each webhook's caBundle as read."""
    reasons: list[str] = []
    data = dict(secret or {})
    ca = _ca(data, "ca.crt", "ca.key", now)
    next_ca = _ca(data, "ca-next.crt", "ca-next.key", now)
    previous = join_pem([data.get("ca-previous.crt", b"")], now=now) or None
    stored = KeyPair(data.get("tls.crt", b""), data.get("tls.key", b""))
    serving = stored if key_matches(stored) else None
    renew_reason = None

    if ca is None:  # first round, or the Secret was damaged
        reasons.append("issued a CA: " + ("no Secret" if secret is None else "no usable CA in it"))
        ca, next_ca, previous, serving = issue_ca(CA_COMMON_NAME, now=now), None, None, None
    elif next_ca is not None:  # PENDING
        in_place = all(contains(b, ca.cert_pem) and contains(b, next_ca.cert_pem) for b in bundles)
        if in_place and now >= issued_at(next_ca.cert_pem) + settle:
            reasons.append("the new CA signs from now on; the old one stays trusted for now")
            ca, next_ca, previous, serving = next_ca, None, ca.cert_pem, None
            renew_reason = "signed by the new CA"
    elif previous is not None:  # RETIRING
        if serving is not None and _settled(serving, ca, now, dns_names, ips, settle):
            reasons.append(
                "dropped the previous CA: the serving cert signed by the new one is live"
            )
            previous = None
    elif rotate_ca or now > renew_after(ca.cert_pem):  # STEADY, time to rotate
        why = "asked for" if rotate_ca else "the CA is past two thirds of its lifetime"
        reasons.append(f"started a CA rotation ({why}): the new CA is trusted before it signs")
        next_ca = issue_ca(CA_COMMON_NAME, now=now)
    elif "ca-next.crt" in data or "ca-previous.crt" in data:
        reasons.append("dropped an unusable or expired pending/previous CA")

    if serving is None:
        renew_reason = renew_reason or "no usable serving certificate"
    else:
        renew_reason = needs_renewal(
            serving.cert_pem, now=now, dns_names=dns_names, ca_pem=ca.cert_pem, ips=ips
        )
    if renew_reason is not None or serving is None:
        reasons.append(f"issued a serving certificate: {renew_reason}")
        serving = issue_serving(ca, dns_names, ips, now=now)

    certs = Certs(ca=ca, serving=serving, next_ca=next_ca, previous_ca=previous)
    new_data = {k: v for k, v in data.items() if k not in KEYS} | certs.data()
    bundle = certs.bundle(now)
    return Plan(
        certs=certs,
        secret_data=None if secret is not None and new_data == data else new_data,
        bundle=bundle,
        patch_webhooks=tuple(i for i, b in enumerate(bundles) if b != bundle),
        reasons=tuple(reasons),
    )


def _ca(data: Mapping[str, bytes], cert_key: str, key_key: str, now: datetime) -> KeyPair | None:
    """The CA stored under these keys when it is whole and still valid."""
    pair = KeyPair(data.get(cert_key, b""), data.get(key_key, b""))
    if not key_matches(pair) or not_after(pair.cert_pem) <= now:
        return None
    return pair


def _settled(
    serving: KeyPair,
    ca: KeyPair,
    now: datetime,
    dns_names: Sequence[str],
    ips: Sequence[str],
    settle: timedelta,
) -> bool:
    """Whether a serving cert signed by `ca` has been in the Secret for `settle` already."""
    fine = needs_renewal(
        serving.cert_pem, now=now, dns_names=dns_names, ca_pem=ca.cert_pem, ips=ips
    )
    return fine is None and now >= issued_at(serving.cert_pem) + settle
