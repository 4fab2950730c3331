"""The HTTP adapter around `webhook.admission.answer`: /mutate, probes and metrics. Edge code."""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from prometheus_client import Counter, Histogram

from webhook import accesslog, admission, decide, review
from webhook.config import Config
from webhook.limits import Limits
from webhook.lookup import Lookups
from webhook.metrics import CONTENT_TYPE, Metrics
from webhook.review import AdmissionRequest, BadReview
from webhook.tls import ServingTLS


class BodyBudget:
    """Bytes of review being read, decoded or answered at once, across all connections
    (`Limits.body_budget_bytes`). The API server's reviews are a few KiB; only oversized
    ones ever wait here, and smaller ones pass while a large one waits for room.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = limit
        self._freed = asyncio.Event()  # set by every give: waiters check for their room

    async def take(self, size: int, wait: float) -> int:
        """Take `size` bytes (at most the whole budget) and return what was taken;
        TimeoutError if there was no room within `wait` seconds."""
        size = min(size, self.limit)
        if self._free < size:  # the usual case skips this: room now, and no timer
            async with asyncio.timeout(wait):
                while self._free < size:
                    self._freed.clear()
                    await self._freed.wait()
        # Nothing else runs between the check and the take (one event loop).
        self._free -= size
        return size

    def give(self, size: int) -> None:
        self._free += size
        self._freed.set()


@dataclass
class State:
    config: Config
    lookups: Lookups
    metrics: Metrics = field(default_factory=Metrics)
    tls: ServingTLS | None = None
    excluded: frozenset[str] = decide.DEFAULT_EXCLUDED
    limits: Limits = field(default_factory=Limits)
    budget: BodyBudget = field(init=False)
    # Read by the in-flight gauge at scrape time: a plain int costs less per admission
    # than the gauge's own locked inc() and dec().
    in_flight: int = 0
    series: dict[tuple[str, str, str], tuple[Counter, Histogram]] = field(
        default_factory=dict, repr=False
    )

    def __post_init__(self) -> None:
        self.budget = BodyBudget(self.limits.body_budget_bytes)


_JSON = {"Content-Type": "application/json"}  # as a header: skips content_type's parsing
Handler = Callable[[State, web.BaseRequest], Awaitable[web.StreamResponse]]


def make_server(state: State, **options: Any) -> web.Server:
    """aiohttp's low-level server over `state` (`options` go to each connection's
    RequestHandler). Four fixed paths need no Application: its router and middleware
    chain cost about 4 µs of every admission (bench/)."""
    state.metrics.in_flight.set_function(lambda: state.in_flight)
    routes: dict[str, tuple[str, Handler]] = {
        "/mutate": ("POST", mutate),
        "/healthz": ("GET", healthz),
        "/readyz": ("GET", readyz),
        "/metrics": ("GET", metrics),
    }

    async def route(request: web.BaseRequest) -> web.StreamResponse:
        found = routes.get(request.path)
        if found is None:
            raise web.HTTPNotFound()
        method, handler = found
        allowed = (method, "HEAD") if method == "GET" else (method,)
        if request.method not in allowed:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        return await handler(state, request)

    loop = asyncio.get_running_loop()

    def request_factory(
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        return web.BaseRequest(
            message, payload, protocol, writer, task, loop, client_max_size=review.MAX_BODY_BYTES
        )

    return web.Server(route, request_factory=request_factory, access_log=None, **options)


async def mutate(state: State, request: web.BaseRequest) -> web.Response:
    """/mutate, in the order the steps run: who is calling, what they declare they send,
    room for the body, the body, the answer, its metrics and log line."""
    refusal = _refused(state, request)
    if refusal is not None:
        return refusal
    size = request.content_length
    try:
        taken = await state.budget.take(size or review.MAX_BODY_BYTES, state.limits.body_seconds)
    except TimeoutError:
        busy = _bad(state, 503, "too many large reviews at once; retry")
        busy.force_close()
        return busy
    try:
        decoded = await _decode(state, request)
        if isinstance(decoded, web.Response):
            return decoded
        return await _answer(state, decoded)
    finally:
        state.budget.give(taken)


def _refused(state: State, request: web.BaseRequest) -> web.Response | None:
    """The answer to a request refused on its client certificate or headers alone."""
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
    return None


async def _decode(state: State, request: web.BaseRequest) -> AdmissionRequest | web.Response:
    """The decoded review, or the 4xx that answers a body too slow, too large or not one."""
    seconds = state.limits.body_seconds
    try:
        if request.content.is_eof():
            data = await request.read()  # already received whole: nothing to time out
        else:
            async with asyncio.timeout(seconds):
                data = await request.read()
        return review.parse_review(data)
    except TimeoutError:
        slow = _bad(state, 408, f"body not received within {seconds:g} s")
        slow.force_close()
        return slow
    except web.HTTPRequestEntityTooLarge:
        return _bad(state, 413, f"body exceeds the {review.MAX_BODY_BYTES} byte limit")
    except BadReview as exc:
        return _bad(state, exc.status, str(exc))


async def _answer(state: State, request: AdmissionRequest) -> web.Response:
    start = time.perf_counter()
    state.in_flight += 1
    try:
        answered = await admission.answer(request, state.config, state.lookups, state.excluded)
    finally:
        state.in_flight -= 1
    elapsed = time.perf_counter() - start
    _observe(state, (request.operation, answered.mode, answered.decision), elapsed)
    accesslog.admission(
        request.uid,
        request.ref,
        request.operation,
        answered.mode,
        answered.decision,
        request.dry_run,
        round(elapsed * 1000, 3),
    )
    body = review.dumps(review.encode(request.uid, answered.response))
    return web.Response(body=body, headers=_JSON)


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


def _client_refusal(request: web.BaseRequest) -> str | None:
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


async def healthz(_state: State, _request: web.BaseRequest) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(state: State, _request: web.BaseRequest) -> web.Response:
    tls = state.tls
    if tls is not None and tls.expired():
        return web.Response(status=503, text=f"serving certificate expired at {tls.expires}\n")
    return web.Response(text="ready\n")


async def metrics(state: State, _request: web.BaseRequest) -> web.Response:
    body = state.metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
