"""The aiohttp application: HTTP in, pure decision, HTTP out. Edge code."""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from dataclasses import dataclass, field

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from prometheus_client import Counter, Histogram

from webhook import accesslog, decide, review
from webhook.config import Config
from webhook.lookup import Lookups, answer_gate
from webhook.metrics import CONTENT_TYPE, Metrics
from webhook.review import AdmissionRequest, AdmissionResponse, BadReview
from webhook.tls import ServingTLS

log = logging.getLogger("schemagate.admission")


class BodyBudget:
    """Bytes of review being read, decoded or answered at once, across all connections.

    JSON decodes to many times its size in Python objects (a body of `[{},{},...]` to about
    25 times), so a handful of concurrent 3 MiB reviews would exhaust a 256 MiB pod. The
    API server's reviews are a few KiB; only oversized ones ever wait here, and smaller
    ones pass while a large one waits for room.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = limit
        self._room = asyncio.Condition()
        self._waiting = 0

    async def take(self, size: int, wait: float) -> int:
        """Take `size` bytes (at most the whole budget) and return what was taken;
        TimeoutError if there was no room within `wait` seconds."""
        size = min(size, self.limit)
        if self._free >= size:
            # Room now, the usual case: the same outcome as below without a timer or the
            # lock, as nothing else runs between the check and the take.
            self._free -= size
            return size
        self._waiting += 1
        try:
            async with asyncio.timeout(wait), self._room:
                await self._room.wait_for(lambda: self._free >= size)
                self._free -= size
        finally:
            self._waiting -= 1
        return size

    async def give(self, size: int) -> None:
        self._free += size
        if self._waiting:  # only an oversized review ever waits: skip the lock otherwise
            async with self._room:
                self._room.notify_all()


@dataclass
class State:
    config: Config
    lookups: Lookups
    metrics: Metrics = field(default_factory=Metrics)
    tls: ServingTLS | None = None
    excluded: frozenset[str] = decide.DEFAULT_EXCLUDED
    # The API server sends a review whole; a body still trickling in after this long is
    # a slow or hostile client holding a connection.
    body_seconds: float = 10.0
    # 4 MiB: the largest review the API server can send, and at most ~100 MiB decoded.
    budget: BodyBudget = field(default_factory=lambda: BodyBudget(4 * 1024 * 1024))
    # Read by the in-flight gauge at scrape time: a plain int costs less per admission
    # than the gauge's own locked inc() and dec().
    in_flight: int = 0
    series: dict[tuple[str, str, str], tuple[Counter, Histogram]] = field(
        default_factory=dict, repr=False
    )


STATE = web.AppKey("state", State)
_JSON = {"Content-Type": "application/json"}  # as a header: skips content_type's parsing


def make_app(state: State) -> web.Application:
    app = web.Application(client_max_size=review.MAX_BODY_BYTES)
    app[STATE] = state
    state.metrics.in_flight.set_function(lambda: state.in_flight)
    app.router.add_post("/mutate", mutate)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def mutate(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.tls is not None and state.tls.client_ca is not None:
        refusal = _client_refusal(request)
        if refusal is not None:
            return _bad(state, 403, refusal)
    # The API server's exact header skips content_type's parsing; any other is parsed.
    if (
        request.headers.get("Content-Type") != "application/json"
        and request.content_type != "application/json"
    ):
        return _bad(
            state, 415, f"content type must be application/json, got {request.content_type}"
        )
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        # The API server never compresses a review; decompressing is only an attack surface.
        return _bad(state, 415, "content encoding must be identity")
    size = request.content_length
    if size is not None and size > review.MAX_BODY_BYTES:
        return _bad(
            state, 413, f"body of {size} bytes exceeds the {review.MAX_BODY_BYTES} byte limit"
        )
    try:
        taken = await state.budget.take(size or review.MAX_BODY_BYTES, state.body_seconds)
    except TimeoutError:
        busy = _bad(state, 503, "too many large reviews at once; retry")
        busy.force_close()
        return busy
    try:
        return await _review(state, request)
    finally:
        await state.budget.give(taken)


async def _review(state: State, request: web.Request) -> web.Response:
    try:
        if request.content.is_eof():
            body = await request.read()  # already received whole: nothing to time out
        else:
            async with asyncio.timeout(state.body_seconds):
                body = await request.read()
        admission = review.parse_review(body)
    except TimeoutError:
        slow = _bad(state, 408, f"body not received within {state.body_seconds:g} s")
        slow.force_close()
        return slow
    except web.HTTPRequestEntityTooLarge:
        return _bad(state, 413, f"body exceeds the {review.MAX_BODY_BYTES} byte limit")
    except BadReview as exc:
        return _bad(state, exc.status, str(exc))

    start = time.perf_counter()
    route = decide.mode(admission, state.excluded)
    state.in_flight += 1
    try:
        answer = await _answer(state, admission, route)
    except Exception:
        log.exception("admission failed", extra={"uid": admission.uid})
        answer = review.errored(
            500, f"schemagate internal error (uid {admission.uid}); see the webhook log"
        )
    finally:
        state.in_flight -= 1
    elapsed = time.perf_counter() - start
    decision = _decision(answer)
    _observe(state, (admission.operation, route, decision), elapsed)
    accesslog.admission(
        admission.uid,
        admission.ref,
        admission.operation,
        route,
        decision,
        admission.dry_run,
        round(elapsed * 1000, 3),
    )
    return web.Response(body=review.dumps(review.encode(admission.uid, answer)), headers=_JSON)


async def _answer(state: State, admission: AdmissionRequest, route: str) -> AdmissionResponse:
    result = decide.admit(admission, state.config, route)
    if isinstance(result, AdmissionResponse):
        return result
    answer, _ = await answer_gate(result, state.lookups, state.config)
    return answer


def _observe(state: State, key: tuple[str, str, str], seconds: float) -> None:
    """Count an admission by (operation, mode, decision) and time it by mode.

    prometheus_client's `labels()` checks and locks on every call; the few dozen series an
    admission can land in are looked up once each.
    """
    series = state.series.get(key)
    if series is None:
        series = state.series[key] = (
            state.metrics.requests.labels(*key),
            state.metrics.latency.labels(key[1]),
        )
    series[0].inc()
    series[1].observe(seconds)


def _decision(answer: AdmissionResponse) -> str:
    if answer.code == 500:
        return "error"
    if not answer.allowed:
        return "denied"
    return "patched" if answer.patch else "allowed"


def _client_refusal(request: web.Request) -> str | None:
    """Why /mutate refuses this client, or None. TLS has verified any certificate it
    presented against the --client-ca; OpenSSL accepts one without an extended key usage
    for any purpose, so its clientAuth is checked here."""
    transport = request.transport
    sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
    der = sslobj.getpeercert(binary_form=True) if isinstance(sslobj, ssl.SSLObject) else None
    if not der:
        return "a client certificate signed by the --client-ca is required"
    if not _client_auth(der):
        return "the client certificate must carry the clientAuth extended key usage"
    return None


@functools.lru_cache(maxsize=16)
def _client_auth(der: bytes) -> bool:
    """Whether a certificate allows client authentication (cached: the API server
    presents the same one on every connection)."""
    try:
        usage = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.ExtendedKeyUsage
        )
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH in usage.value


def _bad(state: State, status: int, reason: str) -> web.Response:
    state.metrics.rejected.labels(str(status)).inc()
    return web.Response(status=status, text=reason + "\n")


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    tls = request.app[STATE].tls
    if tls is not None and tls.expired():
        return web.Response(status=503, text=f"serving certificate expired at {tls.expires}\n")
    return web.Response(text="ready\n")


async def metrics(request: web.Request) -> web.Response:
    body = request.app[STATE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
