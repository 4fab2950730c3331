"""The admission decision over data: route a request and answer everything but I/O. Pure.

`admit` answers inject mode, cleanups and every refusal directly, and returns a
`GateCheck` when the answer depends on what a database records; the HTTP layer then
fetches that and calls `finish_gate`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from webhook import contract, gate, inject, once
from webhook.config import Config
from webhook.contract import Invalid
from webhook.review import AdmissionRequest, AdmissionResponse, JsonPatch, allowed, denied, patched
from webhook.versions import Recorded

DEFAULT_EXCLUDED = frozenset(("kube-system",))
REMOVED = "schemagate removed what it injected: the Deployment is no longer in inject mode"


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
        return _with_cleanup(allowed(), inject.plan_removal(obj))
    try:
        contract.mode_of(obj)
        annotations = contract.annotations_of(obj)
        if route == "inject":
            wanted = contract.parse_inject(annotations)
            planner = once.plan_once if wanted.run == "once" else inject.plan_injection
            plan = planner(obj, wanted, config)
            return patched(plan.ops, plan.warnings)
        spec = contract.parse_gate(annotations)
        cleanup = inject.plan_removal(obj)
        if not gate.needs_check(request):
            return _with_cleanup(allowed(), cleanup)
        return PendingGate(gate.plan_gate(request, spec, config), cleanup)
    except Invalid as exc:
        return denied(f"{request.ref}: {exc}", 422)


def finish_gate(
    pending: PendingGate, found: Recorded | gate.Unreachable, config: Config
) -> AdmissionResponse:
    return _with_cleanup(gate.decide_gate(pending.check, found, config), pending.cleanup)


def _with_cleanup(answer: AdmissionResponse, cleanup: JsonPatch) -> AdmissionResponse:
    """An allow that also takes out a container injected while in inject mode."""
    if not answer.allowed or not cleanup:
        return answer
    return patched(cleanup, (*answer.warnings, REMOVED))
