"""The admission decision over data: route a request and answer everything but I/O. Pure.

`admit` answers inject mode, cleanups and every refusal directly, and returns a
`PendingGate` when the answer depends on what a database records; the lookups
(`webhook.lookup.Lookups.answer`) then read it and call `finish_gate`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import jsonpatch

from webhook import contract, gate, inject, once, workloads
from webhook.config import Config
from webhook.contract import Invalid
from webhook.review import (
    AdmissionRequest,
    AdmissionResponse,
    JsonPatch,
    allowed,
    denied,
    patched,
    show,
)
from webhook.workloads import Workload

# The cluster's own namespace: its pods must start even when schemagate cannot answer.
DEFAULT_EXCLUDED = frozenset(("kube-system",))


def excluded(own_namespace: str | None) -> frozenset[str]:
    """The namespaces schemagate never acts on: kube-system and its own, so a broken
    release of schemagate can always be replaced."""
    return DEFAULT_EXCLUDED | ({own_namespace} if own_namespace else set())


def removed(kind: str) -> str:
    """The warning that goes with taking what schemagate placed out again."""
    return f"schemagate removed what it injected: the {kind} is no longer in inject mode"


@dataclass(slots=True)  # made per admission: see review.AdmissionRequest
class PendingGate:
    """A gate answer waiting on a lookup; `cleanup` ops still go out with an allow."""

    check: gate.GateCheck
    cleanup: JsonPatch
    kind: str


def mode(request: AdmissionRequest, excluded: Collection[str] = DEFAULT_EXCLUDED) -> str:
    """`pass`, `invalid`, `inject`, `gate` or `removed`, from cheap checks only."""
    workload = _workload(request)
    if (
        request.operation not in ("CREATE", "UPDATE")
        or request.namespace in excluded
        or request.object is None
        or workload is None
        or (request.operation == "UPDATE" and workload.release == "create")
        or workload.made_by_controller(request.object)
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
    obj, workload = request.object, _workload(request)
    if route == "pass" or obj is None or workload is None:
        return allowed()
    if route == "removed":
        return _with_cleanup(allowed(), inject.plan_removal(workload, obj), workload.kind)
    try:
        contract.mode_of(obj)
        _check_template_here(workload, obj)
        declared = contract.parse_annotations(contract.annotations_of(obj))
        if route == "inject":
            gate.check_declared(request, declared, config)
            wanted = declared.inject_spec()
            planner = once.plan_once if wanted.run == "once" else inject.plan_injection
            plan = planner(workload, obj, wanted, config)
            return patched(plan.ops, plan.warnings)
        spec = declared.gate_spec()
        cleanup = inject.plan_removal(workload, obj)
        stored = jsonpatch.apply_patch(obj, cleanup) if cleanup else obj
        if not gate.needs_check(request, stored, workload):
            return _with_cleanup(allowed(), cleanup, workload.kind)
        return PendingGate(gate.plan_gate(request, spec, config), cleanup, workload.kind)
    except Invalid as exc:
        return denied(f"{request.ref}: {exc}", 422)


def finish_gate(pending: PendingGate, found: gate.Found, config: Config) -> AdmissionResponse:
    answer = gate.decide_gate(pending.check, found, config)
    return _with_cleanup(answer, pending.cleanup, pending.kind)


def _workload(request: AdmissionRequest) -> Workload | None:
    return workloads.find(request.group, request.version, request.kind)


def _check_template_here(workload: Workload, obj: Mapping[str, Any]) -> None:
    """Refuse a workload whose pod template lives in another object: the label belongs there."""
    ref = workload.referenced(obj)
    if ref is None:
        return
    kind, name = ref.get("kind"), ref.get("name")
    owner = kind if isinstance(kind, str) and kind.isalnum() else "object"
    raise Invalid(
        f"this {workload.kind} takes its pod template from {owner} {show(name)} "
        f"({'.'.join(workload.template_ref or ())}); put the label {contract.LABEL} and "
        f"the schemagate annotations on that {owner} instead"
    )


def _with_cleanup(answer: AdmissionResponse, cleanup: JsonPatch, kind: str) -> AdmissionResponse:
    """An allow that also takes out a container injected while in inject mode."""
    if not answer.allowed or not cleanup:
        return answer
    return patched(cleanup, (*answer.warnings, removed(kind)))
