"""The admission decision over data: route a request and answer everything but I/O. Pure.

`admit` answers inject mode, cleanups and every refusal directly, and returns a
`GateCheck` when the answer depends on what a database records; the HTTP layer then
fetches that and calls `finish_gate`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from webhook import contract, gate, inject
from webhook.config import Config
from webhook.contract import Invalid
from webhook.review import AdmissionRequest, AdmissionResponse, JsonPatch, allowed, denied, patched
from webhook.versions import Recorded

DEFAULT_EXCLUDED = frozenset(("kube-system",))


@dataclass(frozen=True, slots=True)
class PendingGate:
    """A gate answer waiting on a lookup; `cleanup` ops still go out with an allow."""

    check: gate.GateCheck
    cleanup: JsonPatch


def mode(request: AdmissionRequest, excluded: Collection[str] = DEFAULT_EXCLUDED) -> str:
    """`pass`, `invalid`, `inject`, `gate` or `removed`, from cheap checks only."""
    if (
        not request.is_deployment
        or request.operation not in ("CREATE", "UPDATE")
        or request.namespace in excluded
        or request.object is None
    ):
        return "pass"
    labels = contract.labels_of(request.object)
    if contract.LABEL in labels:
        value = labels[contract.LABEL]
        return str(value) if value in contract.MODES else "invalid"
    if contract.LABEL in contract.labels_of(request.old_object):
        return "removed"
    return "pass"


def admit(request: AdmissionRequest, config: Config, route: str) -> AdmissionResponse | PendingGate:
    obj = request.object
    if route == "pass" or obj is None:
        return allowed()
    if route == "removed":
        return patched(inject.plan_removal(obj), _removal_note(obj))
    try:
        contract.mode_of(obj)
        annotations = contract.annotations_of(obj)
        if route == "inject":
            plan = inject.plan_injection(obj, contract.parse_inject(annotations), config)
            return patched(plan.ops, plan.warnings)
        spec = contract.parse_gate(annotations)
        cleanup = inject.plan_removal(obj)
        if not gate.needs_check(request):
            return patched(cleanup, _removal_note(obj))
        return PendingGate(gate.plan_gate(request, spec, config), cleanup)
    except Invalid as exc:
        return denied(f"{request.ref}: {exc}", 422)


def finish_gate(
    pending: PendingGate, found: Recorded | gate.Unreachable, config: Config
) -> AdmissionResponse:
    answer = gate.decide_gate(pending.check, found, config)
    if answer.allowed and pending.cleanup:
        return patched(pending.cleanup, (*answer.warnings, *_removal_note_text()))
    return answer


def _removal_note(obj: object) -> tuple[str, ...]:
    return (
        _removal_note_text()
        if isinstance(obj, dict) and inject.find_injected(obj) is not None
        else ()
    )


def _removal_note_text() -> tuple[str, ...]:
    return (
        f"schemagate removed init container {inject.NAME}: the Deployment is no longer in "
        "inject mode",
    )
