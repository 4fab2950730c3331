"""The answer to one admission review, apart from HTTP: route, decide, look up, answer.

`answer` is everything the webhook does with a decoded review; `webhook.app` is only its
HTTP adapter (client checks, body limits, metrics and the log line). The one piece of
I/O, reading what a database records, comes in through `GateLookups`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from webhook import decide, review
from webhook.config import Config
from webhook.gate import Found
from webhook.review import AdmissionRequest, AdmissionResponse

log = logging.getLogger("schemagate.admission")


class GateLookups(Protocol):
    """Finishes a gate from what its database records (`webhook.lookup.Lookups`)."""

    async def answer(
        self, pending: decide.PendingGate, config: Config
    ) -> tuple[AdmissionResponse, Found]: ...


@dataclass(slots=True)  # made per admission: see review.AdmissionRequest
class Answered:
    response: AdmissionResponse
    mode: str  # decide.mode's route: pass, invalid, inject, gate or removed
    decision: str  # allowed, patched, denied or error


async def answer(
    request: AdmissionRequest,
    config: Config,
    lookups: GateLookups,
    excluded: Collection[str] = decide.DEFAULT_EXCLUDED,
) -> Answered:
    """The response to `request`; a fault in schemagate itself is a 500 answer, never
    an exception, so the API server applies the webhook's failurePolicy."""
    route = decide.mode(request, excluded)
    try:
        result = decide.admit(request, config, route)
        if isinstance(result, decide.PendingGate):
            result, _ = await lookups.answer(result, config)
    except Exception:
        log.exception("admission failed", extra={"uid": request.uid})
        result = review.errored(
            500, f"schemagate internal error (uid {request.uid}); see the webhook log"
        )
    return Answered(result, route, _decision(result))


def _decision(answer: AdmissionResponse) -> str:
    if answer.code == 500:
        return "error"
    if not answer.allowed:
        return "denied"
    return "patched" if answer.patch else "allowed"
