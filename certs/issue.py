"""Certificate issuance and inspection: PEM bytes in, PEM bytes or facts out.

Pure: no I/O, no logging, no exit; only `cryptography` and the standard library, so the
CLI, the server and the in-cluster bootstrap share it and tests need no fixtures.

Keys are ECDSA P-256: a key is generated in milliseconds (RSA-2048 takes ~100 ms), the
certificates are small, handshakes are fast, and every TLS stack in the path (the API
server's Go client, Python's ssl, openssl) supports it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from certs.times import utc_text

# The CA signs serving certs for its whole life and is rotated at two thirds of it
# (~3.3 years in); five years keeps rotations rare without an unbounded trust anchor.
CA_LIFETIME = timedelta(days=5 * 365)
# Renewed at two thirds (~8 months), so a failing renewal loop has months to be noticed.
SERVING_LIFETIME = timedelta(days=365)
# notBefore is backdated so a node whose clock is a little behind accepts a fresh cert.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server and in-cluster clients use to reach a Service."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def issue_ca(common_name: str, *, now: datetime, lifetime: timedelta = CA_LIFETIME) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(name, name, key.public_key(), now - CLOCK_SKEW, now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(_cert_pem(cert), _key_pem(key))


def issue_serving(
    ca: KeyPair,
    dns_names: Sequence[str],
    ips: Sequence[str] = (),
    *,
    now: datetime,
    lifetime: timedelta = SERVING_LIFETIME,
) -> KeyPair:
    """A TLS server certificate for `dns_names` and `ips`, signed by `ca`.

    It never outlives the CA: a chain is only as valid as its shortest link.
    """
    if not dns_names and not ips:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = _issuer_key(ca.key_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, [*dns_names, *ips][0])])
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    not_after = min(now + lifetime, ca_cert.not_valid_after_utc)
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), now - CLOCK_SKEW, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # EC keys sign the handshake (ECDHE); keyEncipherment is RSA key transport only.
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(_cert_pem(cert), _key_pem(key))


def not_after(cert_pem: bytes) -> datetime:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def issued_at(cert_pem: bytes) -> datetime:
    """When a certificate issued here was made (its notBefore is backdated by CLOCK_SKEW)."""
    return x509.load_pem_x509_certificate(cert_pem).not_valid_before_utc + CLOCK_SKEW


def renew_after(cert_pem: bytes) -> datetime:
    """After this moment less than a third of the certificate's lifetime is left."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    return cert.not_valid_after_utc - lifetime / 3


def needs_renewal(
    cert_pem: bytes,
    *,
    now: datetime,
    dns_names: Sequence[str],
    ca_pem: bytes,
    ips: Sequence[str] = (),
) -> str | None:
    """Why a serving certificate must be replaced, or None when it is fine to keep."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca_cert = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as e:
        return f"unparsable certificate: {e}"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by the current CA"
    has_dns, has_ips = _sans(cert)
    want_ips = {ipaddress.ip_address(ip) for ip in ips}
    if has_dns != set(dns_names) or has_ips != want_ips:
        have = sorted(has_dns) + sorted(map(str, has_ips))
        want = sorted(dns_names) + sorted(map(str, want_ips))
        return f"names differ: has {have}, wants {want}"
    if now > renew_after(cert_pem):
        expires = utc_text(cert.not_valid_after_utc)
        return f"less than a third of its lifetime left (expires {expires})"
    return None


def key_matches(pair: KeyPair) -> bool:
    """Whether the certificate and the key parse and belong together."""
    try:
        cert = x509.load_pem_x509_certificate(pair.cert_pem)
        key = serialization.load_pem_private_key(pair.key_pem, password=None)
    except (ValueError, TypeError):
        return False
    return cert.public_key() == key.public_key()


def verify_chain(cert_pem: bytes, ca_bundle_pem: bytes, name: str, now: datetime) -> None:
    """Verify like a TLS client would (webpki rules) for a DNS name or an IP address.

    Raises `cryptography.x509.verification.VerificationError` when the chain is not valid.
    """
    store = Store(x509.load_pem_x509_certificates(ca_bundle_pem))
    try:
        subject: x509.DNSName | x509.IPAddress = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        subject = x509.DNSName(name)
    verifier = PolicyBuilder().store(store).time(now).build_server_verifier(subject)
    verifier.verify(x509.load_pem_x509_certificate(cert_pem), [])


def _sans(
    cert: x509.Certificate,
) -> tuple[set[str], set[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    ips = san.get_values_for_type(x509.IPAddress)
    addresses = {ip for ip in ips if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)}
    return set(san.get_values_for_type(x509.DNSName)), addresses


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _issuer_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(key_pem, password=None)
    # RSA too, so a CA imported from elsewhere into the Secret keeps working.
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"unsupported CA key type {type(key).__name__}")
    return key


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
