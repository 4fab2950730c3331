"""The aiohttp application: HTTP in, pure decision, HTTP out. Edge code."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from aiohttp import web

from webhook import decide, review
from webhook.config import Config
from webhook.lookup import Lookups
from webhook.metrics import CONTENT_TYPE, Metrics
from webhook.review import AdmissionRequest, AdmissionResponse, BadReview
from webhook.tls import ServingTLS

log = logging.getLogger("schemagate.admission")

# A denial read from a cache older than this is read again before it is final, so a
# person who just ran the migration does not wait out the whole cache TTL.
RECHECK_DENIAL_AFTER = 1.0


@dataclass
class State:
    config: Config
    lookups: Lookups
    metrics: Metrics = field(default_factory=Metrics)
    tls: ServingTLS | None = None
    excluded: frozenset[str] = decide.DEFAULT_EXCLUDED


STATE = web.AppKey("state", State)


def make_app(state: State) -> web.Application:
    app = web.Application(client_max_size=review.MAX_BODY_BYTES)
    app[STATE] = state
    app.router.add_post("/mutate", mutate)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def mutate(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.content_type != "application/json":
        return _bad(
            state, 415, f"content type must be application/json, got {request.content_type}"
        )
    if request.content_length is not None and request.content_length > review.MAX_BODY_BYTES:
        return _bad(
            state,
            413,
            f"body of {request.content_length} bytes exceeds the "
            f"{review.MAX_BODY_BYTES} byte limit",
        )
    try:
        body = await request.read()
        admission = review.parse_review(body)
    except web.HTTPRequestEntityTooLarge:
        return _bad(state, 413, f"body exceeds the {review.MAX_BODY_BYTES} byte limit")
    except BadReview as exc:
        return _bad(state, exc.status, str(exc))

    start = time.perf_counter()
    route = decide.mode(admission, state.excluded)
    state.metrics.in_flight.inc()
    try:
        answer = await _answer(state, admission, route)
    except Exception:
        log.exception("admission failed", extra={"uid": admission.uid})
        answer = review.errored(
            500, f"schemagate internal error (uid {admission.uid}); see the webhook log"
        )
    finally:
        state.metrics.in_flight.dec()
    elapsed = time.perf_counter() - start
    decision = _decision(answer)
    state.metrics.requests.labels(admission.operation, route, decision).inc()
    state.metrics.latency.labels(route).observe(elapsed)
    log.info(
        "admission",
        extra={
            "uid": admission.uid,
            "object": admission.ref,
            "operation": admission.operation,
            "mode": route,
            "decision": decision,
            "dry_run": admission.dry_run,
            "duration_ms": round(elapsed * 1000, 3),
        },
    )
    return web.Response(
        body=review.dumps(review.encode(admission.uid, answer)), content_type="application/json"
    )


async def _answer(state: State, admission: AdmissionRequest, route: str) -> AdmissionResponse:
    result = decide.admit(admission, state.config, route)
    if isinstance(result, AdmissionResponse):
        return result
    name = result.check.db.name
    fetched = await state.lookups.get(name, state.config.cache_ttl)
    answer = decide.finish_gate(result, fetched.found, state.config)
    if not answer.allowed and fetched.age > RECHECK_DENIAL_AFTER:
        fetched = await state.lookups.get(name, RECHECK_DENIAL_AFTER)
        answer = decide.finish_gate(result, fetched.found, state.config)
    return answer


def _decision(answer: AdmissionResponse) -> str:
    if answer.code == 500:
        return "error"
    if not answer.allowed:
        return "denied"
    return "patched" if answer.patch else "allowed"


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
