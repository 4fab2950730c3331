"""Test certificates, made with `cryptography`: CAs, client and serving certificates
signed by them, a client's trust store, and the certificate a server presents.

ECDSA P-256 throughout: fast to generate, accepted by every component (the webhook,
kube-apiserver, etcd, OpenSSL). `certs.issue` is the product's own issuer (serving
certificates only); what tests need beside it, client certificates with chosen groups
and extended key usages above all, is made here, once for every tier.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.issue import KeyPair

# Certificates are valid from a little before now, so a clock a little behind still trusts them.
BACKDATE = datetime.timedelta(minutes=5)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    """CN=common_name, with one O= per organization (Kubernetes reads them as groups)."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


@dataclass(frozen=True)
class CertificateAuthority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(
        cls, common_name: str, *, lifetime: datetime.timedelta = datetime.timedelta(days=2)
    ) -> CertificateAuthority:
        """A new self-signed CA."""
        key = new_key()
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(common_name))
            .issuer_name(name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def of(cls, pair: KeyPair) -> CertificateAuthority:
        """A CA made elsewhere (e.g. by `certs.issue.issue_ca`), to sign more certificates."""
        key = serialization.load_pem_private_key(pair.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey), type(key)
        return cls(key, x509.load_pem_x509_certificate(pair.cert_pem))

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        usage: x509.ObjectIdentifier | None = ExtendedKeyUsageOID.CLIENT_AUTH,
        dns_names: Sequence[str] = (),
        ips: Sequence[str] = (),
        now: datetime.datetime | None = None,
        lifetime: datetime.timedelta = datetime.timedelta(days=1),
    ) -> KeyPair:
        """A leaf certificate signed by this CA.

        `usage`: its one extended key usage (clientAuth unless told; serverAuth for a
        server), or None for no extended key usage extension at all. `dns_names` and
        `ips` become its subject alternative names (none: no such extension). `now`: the
        moment it is issued at, so a test can make one that has already expired.
        """
        key = new_key()
        now = now or datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common_name, organizations))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return KeyPair(cert.public_bytes(serialization.Encoding.PEM), key_pem(key))


def issue_client(
    ca: KeyPair,
    common_name: str,
    *,
    usage: x509.ObjectIdentifier | None = ExtendedKeyUsageOID.CLIENT_AUTH,
    now: datetime.datetime | None = None,
    lifetime: datetime.timedelta = datetime.timedelta(days=1),
) -> KeyPair:
    """A client certificate signed by `ca` (a `certs.issue` CA), for 127.0.0.1, as a
    kubeconfig's client-certificate would be.

    certs.issue only makes serving certificates (serverAuth); the API server's client
    certificate carries clientAuth instead, which OpenSSL checks on the server side.
    """
    return CertificateAuthority.of(ca).issue(
        common_name, usage=usage, ips=("127.0.0.1",), now=now, lifetime=lifetime
    )


def trust(*ca_pems: bytes) -> ssl.SSLContext:
    """A client context trusting exactly these CAs (a caBundle)."""
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=b"".join(ca_pems).decode())
    return context


def served_certificate(port: int, context: ssl.SSLContext | None = None) -> bytes:
    """The DER certificate a new TLS connection to 127.0.0.1:port is shown: verified
    with `context`, or, without one, whatever is served, trusted or not."""
    if context is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def served_pem(port: int) -> bytes:
    """`served_certificate`, unverified, as PEM."""
    der = served_certificate(port)
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
