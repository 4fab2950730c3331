"""Every kind in webhook.workloads: real manifests of each, injected, gated and cleaned up.

The manifests are tests/fixtures/workloads/ (sources in SOURCES.md there). Results are
validated against the newest Kubernetes OpenAPI schema kubernetes-validate ships; that
schema has no batch/v1beta1 (removed in 1.25) and no Argo Rollouts, so a v1beta1 CronJob
is validated as the batch/v1 CronJob it converts to (the fields are the same), and a
Rollout's pod template inside a Deployment (the Rollout CRD embeds the same PodTemplateSpec).
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import kubernetes_validate
import orjson
import pytest

from tests.factories import (
    deployment,
    gvk,
    labelled,
    review,
    shaped,
    workload,
    workload_fixtures,
)
from tests.support import wording
from webhook import decide, workloads
from webhook.config import Config, DatabaseConfig
from webhook.inject import INHERITED, NAME
from webhook.review import AdmissionResponse, parse_review
from webhook.versions import Recorded
from webhook.workloads import Workload

FIXTURES = workload_fixtures()
IDS = [name for name, _ in FIXTURES]
SCHEMA_VERSION = kubernetes_validate.latest_version()
CONFIG = Config(
    databases={
        "orders": DatabaseConfig("orders", "url", "postgresql://h/orders", "flyway", frozenset("*"))
    }
)
INJECT = {"schemagate.dev/tool": "flyway"}
GATE = {
    "schemagate.dev/tool": "flyway",
    "schemagate.dev/database": "orders",
    "schemagate.dev/schema-version": "42",
}
# Fixtures whose pod template is elsewhere (Argo Rollouts' workloadRef): refused when labelled.
TEMPLATE_ELSEWHERE = {"argo-rollouts__rollout-ref-deployment.rollout.yaml"}
# The rest, each labelled for both modes below.
OWN_TEMPLATE = [(name, obj) for name, obj in FIXTURES if name not in TEMPLATE_ELSEWHERE]
OWN_IDS = [name for name, _ in OWN_TEMPLATE]
KIND_NAMES = sorted({w.kind for w in workloads.KINDS})


def _admit(obj: dict[str, Any] | None, **kw: Any) -> AdmissionResponse | decide.PendingGate:
    doc = obj if obj is not None else kw["old"]
    request = parse_review(orjson.dumps(review(obj, kind=gvk(doc), **kw)))
    return decide.admit(request, CONFIG, decide.mode(request))


def _answer(obj: dict[str, Any] | None, **kw: Any) -> AdmissionResponse:
    answer = _admit(obj, **kw)
    assert isinstance(answer, AdmissionResponse), answer
    return answer


def _row(obj: dict[str, Any]) -> Workload:
    row = workloads.find(*gvk(obj))
    assert row is not None, gvk(obj)
    return row


def _in_shop(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"]["namespace"] = "shop"
    return out


def _validate(obj: dict[str, Any]) -> None:
    if obj["kind"] == "Rollout":
        template = _row(obj).template_of(obj)
        obj = shaped(deployment(), "Deployment")
        obj["spec"]["template"] = template
        obj["spec"]["selector"] = {"matchLabels": template["metadata"]["labels"]}
    elif obj["apiVersion"] == "batch/v1beta1":
        obj = {**obj, "apiVersion": "batch/v1"}
    kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)


# --- the table ---------------------------------------------------------------------------


def test_the_table_names_each_kind_once_with_its_template() -> None:
    pointers = {(w.api_version, w.kind): w.pod_pointer for w in workloads.KINDS}
    assert pointers == {
        ("apps/v1", "Deployment"): "/spec/template/spec",
        ("apps/v1", "StatefulSet"): "/spec/template/spec",
        ("apps/v1", "DaemonSet"): "/spec/template/spec",
        ("apps/v1", "ReplicaSet"): "/spec/template/spec",
        ("batch/v1", "Job"): "/spec/template/spec",
        ("batch/v1", "CronJob"): "/spec/jobTemplate/spec/template/spec",
        ("batch/v1beta1", "CronJob"): "/spec/jobTemplate/spec/template/spec",
        ("argoproj.io/v1alpha1", "Rollout"): "/spec/template/spec",
    }
    assert len(pointers) == len(workloads.KINDS)
    assert [w.kind for w in workloads.KINDS if w.release == "create"] == ["Job"]


def test_a_job_update_passes_whatever_its_labels() -> None:
    job = shaped(deployment(mode="inject", annotations=INJECT), "Job")
    request = parse_review(orjson.dumps(review(job, kind=gvk(job), operation="UPDATE", old=job)))
    assert decide.mode(request) == "pass"
    created = parse_review(orjson.dumps(review(job, kind=gvk(job))))
    assert decide.mode(created) == "inject"


def test_every_kind_has_a_real_manifest() -> None:
    seen = {(_row(obj).api_version, obj["kind"]) for _, obj in FIXTURES}
    assert seen == {(w.api_version, w.kind) for w in workloads.KINDS}


@pytest.mark.parametrize(
    "kind",
    [("", "v1", "Pod"), ("apps", "v1beta1", "StatefulSet"), ("example.com", "v1", "Rollout")],
)
def test_unknown_kinds_pass_untouched(kind: tuple[str, str, str]) -> None:
    obj = labelled(deployment(), "inject", INJECT)
    request = parse_review(orjson.dumps(review(obj, kind=kind)))
    assert workloads.find(*kind) is None
    assert decide.mode(request) == "pass"
    answer = decide.admit(request, CONFIG, "inject")
    assert answer == AdmissionResponse(True)


# --- every real manifest -------------------------------------------------------------------


@pytest.mark.parametrize(("name", "obj"), FIXTURES, ids=IDS)
def test_unlabelled_manifest_is_allowed_untouched(name: str, obj: dict[str, Any]) -> None:
    assert _answer(obj) == AdmissionResponse(True)


@pytest.mark.parametrize(("name", "obj"), OWN_TEMPLATE, ids=OWN_IDS)
def test_labelled_manifest_gets_one_valid_injection_where_its_kind_keeps_pods(
    name: str, obj: dict[str, Any]
) -> None:
    row = _row(obj)
    original = labelled(_in_shop(obj), "inject", INJECT)
    answer = _answer(original)
    assert answer.allowed and answer.patch, answer.message
    assert {op["path"].rsplit("/initContainers", 1)[0] for op in answer.patch} == {row.pod_pointer}
    result = jsonpatch.apply_patch(original, answer.patch)
    _validate(result)

    before, after = row.pod_spec(original), row.pod_spec(result)
    inits = after["initContainers"]
    assert [c["name"] for c in inits].count(NAME) == 1
    assert inits[:-1] == before.get("initContainers", [])
    app, injected = before["containers"][0], inits[-1]
    assert injected["name"] == NAME and injected["image"] == app["image"]
    assert injected["command"] == ["flyway", "migrate"]
    for key in INHERITED:
        assert injected.get(key) == app.get(key), key
    # Nothing but the init containers changed.
    rest_after, rest_before = copy.deepcopy(result), copy.deepcopy(original)
    del row.pod_spec(rest_after)["initContainers"]  # type: ignore[attr-defined]
    row.pod_spec(rest_before).pop("initContainers", None)  # type: ignore[attr-defined]
    assert rest_after == rest_before
    # Reinvocation (and every later apply of the same object) changes nothing more.
    assert _answer(result) == AdmissionResponse(True)
    assert _answer(result, operation="UPDATE", old=result) == AdmissionResponse(True)

    # Removing the label takes the container out again, and says so for this kind ...
    unlabelled = copy.deepcopy(result)
    del unlabelled["metadata"]["labels"]["schemagate.dev/migrate"]
    cleaned = _answer(unlabelled, operation="UPDATE", old=result)
    if row.release == "create":
        # ... except from a Job: its template is immutable and its pods already made, so
        # the update passes untouched (a removal would only make the API server refuse it).
        assert cleaned == AdmissionResponse(True)
        return
    assert cleaned.allowed and cleaned.patch
    restored = jsonpatch.apply_patch(unlabelled, cleaned.patch)
    assert row.pod_spec(restored).get("initContainers", []) == before.get("initContainers", [])
    assert cleaned.warnings == (wording.removed(row.kind),)


@pytest.mark.parametrize(("name", "obj"), OWN_TEMPLATE, ids=OWN_IDS)
def test_labelled_manifest_is_gated_on_create(name: str, obj: dict[str, Any]) -> None:
    pending = _admit(labelled(_in_shop(obj), "gate", GATE))
    assert isinstance(pending, decide.PendingGate)
    behind = decide.finish_gate(pending, Recorded(True, latest="41"), CONFIG)
    assert (behind.allowed, behind.code, behind.message) == (
        False,
        403,
        wording.behind(
            f"shop/{obj['metadata']['name']}", "schema orders >= 42 (flyway)", "orders", "41"
        ),
    )
    assert decide.finish_gate(pending, Recorded(True, latest="42"), CONFIG).allowed


def test_a_rollout_with_workload_ref_is_refused() -> None:
    (rollout,) = [obj for name, obj in FIXTURES if name in TEMPLATE_ELSEWHERE]
    message = (
        "shop/rollout-ref-deployment: this Rollout takes its pod template from Deployment "
        "'rollout-ref-deployment' (spec.workloadRef); put the label schemagate.dev/migrate "
        "and the schemagate annotations on that Deployment instead"
    )
    for mode, wanted in (("inject", INJECT), ("gate", GATE)):
        answer = _answer(labelled(_in_shop(rollout), mode, wanted))
        assert (answer.allowed, answer.code, answer.message) == (False, 422, message)
    # ... and the referenced Deployment, labelled, is injected as any other.
    (target,) = [obj for name, obj in FIXTURES if name.endswith("ref-deployment.deployment.yaml")]
    answer = _answer(labelled(_in_shop(target), "inject", INJECT))
    assert answer.allowed and answer.patch
    # Unlabelling such a Rollout is not refused: there is nothing to take out.
    labelled_rollout = labelled(_in_shop(rollout), "inject", INJECT)
    assert _answer(_in_shop(rollout), operation="UPDATE", old=labelled_rollout).allowed


# --- what is a release --------------------------------------------------------------------


def _edit(obj: dict[str, Any], keys: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    target = out
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value
    return out


NOT_RELEASES: list[tuple[str, tuple[str, ...], Any]] = [
    ("Deployment", ("spec", "replicas"), 7),
    ("StatefulSet", ("spec", "replicas"), 7),
    ("ReplicaSet", ("spec", "replicas"), 7),
    ("Rollout", ("spec", "replicas"), 7),
    ("Rollout", ("spec", "paused"), True),
    ("DaemonSet", ("spec", "minReadySeconds"), 30),
    ("Job", ("spec", "parallelism"), 4),
    ("Job", ("spec", "suspend"), True),
    ("CronJob", ("spec", "suspend"), True),
    ("CronJob", ("spec", "schedule"), "*/5 * * * *"),
    ("CronJob", ("spec", "successfulJobsHistoryLimit"), 1),
    ("CronJob", ("spec", "jobTemplate", "spec", "parallelism"), 4),
    *[(kind, ("metadata", "labels", "team"), "payments") for kind in KIND_NAMES],
    *[(kind, ("metadata", "annotations", "note"), "hello") for kind in KIND_NAMES],
]


@pytest.mark.parametrize(("kind", "keys", "value"), NOT_RELEASES)
def test_edits_that_are_not_a_release_need_no_lookup(
    kind: str, keys: tuple[str, ...], value: Any
) -> None:
    old = shaped(deployment(mode="gate", annotations=GATE), kind)
    answer = _admit(_edit(old, keys, value), operation="UPDATE", old=old)
    assert answer == AdmissionResponse(True)


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_a_new_pod_template_is_a_release_except_for_a_job(kind: str) -> None:
    old = shaped(deployment(mode="gate", annotations=GATE), kind)
    row = workload(kind)
    new = copy.deepcopy(old)
    row.pod_spec(new)["containers"][0]["image"] = "ghcr.io/example/api:2.0"
    bumped = _edit(old, ("metadata", "annotations", "schemagate.dev/schema-version"), "43")
    for changed in (new, bumped):
        answer = _admit(changed, operation="UPDATE", old=old)
        # A Job's template is immutable (the API server refuses the change anyway): its
        # pods are made once, so only its CREATE is a release; its UPDATEs pass.
        assert isinstance(answer, decide.PendingGate) == (kind != "Job"), kind


def test_both_cronjob_versions_are_the_same_kind() -> None:
    v1 = shaped(deployment(mode="inject", annotations=INJECT), "CronJob", "batch/v1")
    v1beta1 = shaped(deployment(mode="inject", annotations=INJECT), "CronJob", "batch/v1beta1")
    assert v1beta1["apiVersion"] == "batch/v1beta1"
    first, second = _answer(v1), _answer(v1beta1)
    assert first.patch == second.patch
    assert first.patch and first.patch[0]["path"] == (
        "/spec/jobTemplate/spec/template/spec/initContainers"
    )


# --- objects a controller made from a template schemagate already saw --------------------


def _owned(obj: dict[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"]["ownerReferences"] = [
        {"apiVersion": api_version, "kind": kind, "name": "owner", "uid": "u", "controller": True}
    ]
    return out


@pytest.mark.parametrize(
    ("kind", "owner"),
    [
        ("ReplicaSet", ("apps/v1", "Deployment")),
        ("ReplicaSet", ("argoproj.io/v1alpha1", "Rollout")),
        ("Job", ("batch/v1", "CronJob")),
        ("Job", ("batch/v1beta1", "CronJob")),
    ],
)
def test_objects_made_by_a_known_controller_pass(kind: str, owner: tuple[str, str]) -> None:
    """kustomize's commonLabels put the label on pod templates, so a Deployment's
    ReplicaSets carry it too; a second answer there could only disagree with the first."""
    obj = _owned(shaped(deployment(mode="gate", annotations=GATE), kind), *owner)
    assert _admit(obj) == AdmissionResponse(True)


def test_objects_owned_otherwise_are_still_handled() -> None:
    job = shaped(deployment(mode="inject", annotations=INJECT), "Job")
    by_workflow = _owned(job, "argoproj.io/v1alpha1", "Workflow")  # not a maker of Jobs
    not_controller = _owned(job, "batch/v1", "CronJob")
    not_controller["metadata"]["ownerReferences"][0]["controller"] = False
    # A Deployment's controller makes ReplicaSets, not Jobs or Deployments.
    by_deployment = _owned(job, "apps/v1", "Deployment")
    nested = _owned(
        shaped(deployment(mode="inject", annotations=INJECT), "Deployment"), "apps/v1", "Deployment"
    )
    for obj in (by_workflow, not_controller, by_deployment, nested):
        answer = _answer(obj)
        assert answer.allowed and answer.patch, obj["metadata"]["ownerReferences"]


# --- the alembic warning counts the pods each kind starts together --------------------------


@pytest.mark.parametrize(
    ("kind", "edit", "note"),
    [
        ("Deployment", (("spec", "replicas"), 3), "with replicas: 3,"),
        ("StatefulSet", (("spec", "replicas"), 3), None),  # OrderedReady: one at a time
        ("DaemonSet", None, "with one pod per node,"),
        ("Job", (("spec", "parallelism"), 3), "with parallelism: 3,"),
        ("Job", None, None),
        ("CronJob", (("spec", "jobTemplate", "spec", "parallelism"), 2), "with parallelism: 2,"),
    ],
)
def test_alembic_warning_per_kind(
    kind: str, edit: tuple[tuple[str, ...], int] | None, note: str | None
) -> None:
    obj = shaped(deployment(mode="inject", annotations={"schemagate.dev/tool": "alembic"}), kind)
    if edit is not None:
        obj = _edit(obj, *edit)
    warnings = _answer(obj).warnings
    if note is None:
        assert len(warnings) == 1
    else:
        assert warnings[1] == (
            f"alembic takes no lock: {note} several pods may run migrations at once; "
            "consider schemagate.dev/migrate: gate with a single migration Job"
        )


def test_a_parallel_statefulset_gets_the_alembic_warning() -> None:
    obj = shaped(
        deployment(mode="inject", annotations={"schemagate.dev/tool": "alembic"}), "StatefulSet"
    )
    obj["spec"]["podManagementPolicy"] = "Parallel"
    assert "with replicas: 1," not in " ".join(_answer(obj).warnings)
    obj["spec"]["replicas"] = 3
    assert "alembic takes no lock: with replicas: 3," in _answer(obj).warnings[1]
