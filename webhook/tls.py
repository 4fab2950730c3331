"""The serving TLS context, reloaded when the certificate files change.

A mounted Secret is updated in place, so the files are polled and compared byte for
byte. A new context is built and validated off to the side; each new handshake then
switches to the newest context from the SNI callback, so established connections and
in-flight requests are never disturbed, and a half-written pair is never used.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from webhook.config import StartupError

log = logging.getLogger(__name__)

# Forward-secret AEAD suites only for TLS 1.2; TLS 1.3 suites are all modern.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass
class Refusal:
    """One accepted connection, as the listener hands it to its handshake (`REFUSALS`);
    filled in when the handshake fails: the alert to send, and a duplicate of the socket
    that keeps the connection open after the event loop has closed its own."""

    sock: socket.socket
    alert: bytes = b""
    held: socket.socket | None = None


# The event loop runs a connection's callbacks, the handshake included, in a copy of the
# context the listener created it in: this tells the handshake which connection it is.
REFUSALS: contextvars.ContextVar[Refusal] = contextvars.ContextVar("schemagate_refusal")


class _KeepsAlert(ssl.SSLObject):
    """An SSLObject that hands the alert of a failed handshake to the listener.

    OpenSSL writes the alert (protocol_version, handshake_failure, unknown_ca, ...) to the
    outgoing buffer before the handshake raises, but asyncio's and uvloop's TLS protocols
    drop the connection without sending that buffer, so a client saw an unexpected EOF
    or a reset instead of the reason.
    """

    outgoing: ssl.MemoryBIO

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError:
            refusal = REFUSALS.get(None)
            if refusal is not None:
                refusal.alert = self.outgoing.read()
                # Only refused connections pay for a second descriptor.
                refusal.held = refusal.sock.dup()
            raise


class _ListenerContext(ssl.SSLContext):
    sslobject_class = _KeepsAlert

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        sslobj = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        assert isinstance(sslobj, _KeepsAlert)
        sslobj.outgoing = outgoing
        return sslobj


class ServingTLS:
    def __init__(
        self,
        cert: Path,
        key: Path,
        client_ca: Path | None = None,
        on_load: Callable[[datetime], None] | None = None,
    ) -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._on_load = on_load
        self._loaded: tuple[bytes, bytes] = (b"", b"")
        self._current = self._build()
        # The listener's own context only dispatches to the current one.
        self.context = self._build(_ListenerContext)
        self.context.sni_callback = self._pick

    @property
    def expires(self) -> datetime:
        return self._expires

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self._expires

    def reload(self) -> str | None:
        """Swap in the files' content if it changed: `ok`, `failed`, or None if unchanged."""
        try:
            pair = (self.cert.read_bytes(), self.key.read_bytes())
        except OSError as exc:
            log.warning("cannot read certificate files: %s", exc.strerror)
            return "failed"
        if pair == self._loaded:
            return None
        try:
            self._current = self._build()
        except (ssl.SSLError, ValueError, OSError) as exc:
            # Mid-rotation the key and certificate may briefly disagree; keep serving the
            # old pair and try again on the next poll.
            log.warning("new certificate files not usable yet: %s", exc)
            return "failed"
        log.info("serving certificate reloaded", extra={"expires": self._expires.isoformat()})
        return "ok"

    async def watch(self, interval: float, on_result: Callable[[str], None]) -> None:
        while True:
            await asyncio.sleep(interval)
            result = self.reload()
            if result is not None:
                on_result(result)

    def _build(self, kind: type[ssl.SSLContext] = ssl.SSLContext) -> ssl.SSLContext:
        """A context from the files; StartupError names the file that is unusable."""
        pair = (self.cert.read_bytes(), self.key.read_bytes())
        # OpenSSL's own errors ("[SSL] PEM lib") name neither the file nor the problem.
        try:
            expires = x509.load_pem_x509_certificate(pair[0]).not_valid_after_utc
        except ValueError:
            raise StartupError(f"{self.cert}: not a PEM certificate") from None
        try:
            serialization.load_pem_private_key(pair[1], password=None)
        except (ValueError, TypeError):
            raise StartupError(f"{self.key}: not an unencrypted PEM private key") from None
        context = kind(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(CIPHERS)
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        try:
            context.load_cert_chain(self.cert, self.key)
        except ssl.SSLError:
            raise StartupError(
                f"{self.key}: the private key does not match the certificate {self.cert}"
            ) from None
        if self.client_ca is not None:
            # Optional at the TLS layer, so kubelet's HTTPS probes (which present no
            # certificate) still reach /healthz and /readyz on this port; a certificate
            # that is presented must verify, and /mutate refuses a client without one.
            context.verify_mode = ssl.CERT_OPTIONAL
            try:
                context.load_verify_locations(cafile=str(self.client_ca))
            except ssl.SSLError:
                raise StartupError(f"{self.client_ca}: no PEM certificate in it") from None
        # What was loaded may differ from `pair` if the files changed in between; then the
        # next poll sees a difference and loads again.
        self._loaded = pair
        self._expires = expires
        if self._on_load is not None:
            self._on_load(self._expires)
        return context

    def _pick(self, sock: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        sock.context = self._current
