"""Issue 15 end to end: every kind beyond Deployments, through kubectl and the v1.20 API server.

The built-in kinds are the API server's own (CronJob as batch/v1beta1, the only version
v1.20 serves; batch/v1 is checked against the recent schema in tests/unit/test_workloads.py).
Rollouts are served by tests/e2e/rollout-crd.yaml, a structural CRD written for this tier
(not Argo Rollouts' own; no Argo Rollouts controller runs).
"""

from __future__ import annotations

import copy
import datetime
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.flyway import FlywayHistory
from tests.e2e.harness import (
    INJECTED,
    LABEL,
    WEBHOOK_NAME,
    Kubectl,
    WebhookServer,
    init_container_names,
    injection_problem,
    pod_spec,
    wait_for,
    warnings,
)
from tests.factories import deployment, labelled, shaped, workload_fixtures
from tests.support import wording

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("webhook")]

NewNamespace = Callable[[str], str]
HERE = Path(__file__).parent
FIXTURES = dict(workload_fixtures())
WORKLOAD_REF = "argo-rollouts__rollout-ref-deployment.rollout.yaml"
# What v1.20 serves: not batch/v1 CronJob.
ON_V1_20 = sorted(
    name
    for name, obj in FIXTURES.items()
    if (obj["apiVersion"], obj["kind"]) != ("batch/v1", "CronJob") and name != WORKLOAD_REF
)
INJECT = {"schemagate.dev/tool": "flyway"}
GATE = {
    "schemagate.dev/tool": "flyway",
    "schemagate.dev/database": "orders",
    "schemagate.dev/schema-version": "42",
}
# kubectl resource names, fully qualified so that no short name or version is guessed.
RESOURCES = {
    ("apps/v1", "Deployment"): "deployments.v1.apps",
    ("apps/v1", "StatefulSet"): "statefulsets.v1.apps",
    ("apps/v1", "DaemonSet"): "daemonsets.v1.apps",
    ("apps/v1", "ReplicaSet"): "replicasets.v1.apps",
    ("batch/v1", "Job"): "jobs.v1.batch",
    ("batch/v1beta1", "CronJob"): "cronjobs.v1beta1.batch",
    ("argoproj.io/v1alpha1", "Rollout"): "rollouts.v1alpha1.argoproj.io",
}


@pytest.fixture(scope="module")
def rollout_crd(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(HERE / "rollout-crd.yaml"), check=True)
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/rollouts.argoproj.io",
        "--timeout=60s",
        check=True,
    )


def resource(obj: dict[str, Any]) -> str:
    return RESOURCES[(obj["apiVersion"], obj["kind"])]


def placed(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"]["namespace"] = namespace
    return out


def apply(kubectl: Kubectl, obj: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", *args, "-f", "-", stdin=json.dumps(obj))


def stored(kubectl: Kubectl, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    found = kubectl.get(resource(obj), meta["name"], meta["namespace"])
    assert found is not None, f"{obj['kind']} {meta['namespace']}/{meta['name']} was not stored"
    return found


def app_workload(
    kind: str, namespace: str, mode: str, annotations: dict[str, str]
) -> dict[str, Any]:
    """tests.factories.deployment as `kind`, with the volume its app container mounts."""
    doc = deployment("api", namespace, mode=mode, annotations=annotations)
    doc["spec"]["template"]["spec"]["volumes"] = [
        {"name": "migrations", "configMap": {"name": "migrations"}}
    ]
    return shaped(doc, kind, "batch/v1beta1" if kind == "CronJob" else None)


# --- inject: every real manifest of every kind ----------------------------------------------


@pytest.mark.usefixtures("rollout_crd")
@pytest.mark.parametrize("name", ON_V1_20)
def test_inject_reapply_and_unlabel_every_kind(
    name: str, kubectl: Kubectl, new_namespace: NewNamespace
) -> None:
    ns = new_namespace("kinds")
    plain = placed(FIXTURES[name], ns)
    doc = labelled(plain, "inject", INJECT)
    kind = doc["kind"]

    dry = apply(kubectl, plain, "--dry-run=server", "-o", "json")
    assert dry.returncode == 0, dry.stderr
    result = apply(kubectl, doc)
    assert result.returncode == 0, result.stderr
    assert [
        w
        for w in warnings(result.stderr)
        if w.startswith(f"schemagate injected init container {INJECTED} (flyway): image ")
    ], result.stderr
    first = stored(kubectl, doc)
    assert injection_problem(json.loads(dry.stdout), first) is None

    # Re-applying the same file changes nothing; kubectl diff sees no drift.
    again = apply(kubectl, doc)
    assert again.returncode == 0, again.stderr
    assert warnings(again.stderr) == []
    after = stored(kubectl, doc)
    # (v1.20 keeps no metadata.generation for Jobs: None == None there.)
    assert after["metadata"].get("generation") == first["metadata"].get("generation")
    assert after["spec"] == first["spec"]
    diff = kubectl("diff", "-f", "-", stdin=json.dumps(doc))
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout

    # Removing the label removes the container, except from a Job (immutable template).
    unlabelled = apply(kubectl, plain)
    assert unlabelled.returncode == 0, unlabelled.stderr
    kept = init_container_names(stored(kubectl, doc))
    before = [c["name"] for c in pod_spec(plain).get("initContainers", [])]
    if kind == "Job":
        assert kept == [*before, INJECTED]
        assert warnings(unlabelled.stderr) == []
    else:
        assert kept == before
        assert warnings(unlabelled.stderr) == [wording.removed(kind)]


# --- gate: a release is checked, nothing else is -------------------------------------------

# kubectl arguments of edits that are not a release, per kind (run against `{name}`).
NOT_RELEASES: dict[str, list[list[str]]] = {
    "StatefulSet": [
        ["scale", "--replicas=3"],
        ["patch", "--type=merge", "-p", '{"spec":{"replicas":2}}'],
    ],
    "ReplicaSet": [["scale", "--replicas=3"]],
    "DaemonSet": [["patch", "--type=merge", "-p", '{"spec":{"minReadySeconds":5}}']],
    "Job": [["patch", "--type=merge", "-p", '{"spec":{"parallelism":2}}']],
    "CronJob": [
        ["patch", "--type=merge", "-p", '{"spec":{"suspend":true}}'],
        ["patch", "--type=merge", "-p", '{"spec":{"schedule":"*/5 * * * *"}}'],
    ],
    "Rollout": [
        ["scale", "--replicas=3"],
        ["patch", "--type=merge", "-p", '{"spec":{"paused":true}}'],
    ],
}


@pytest.mark.usefixtures("rollout_crd")
@pytest.mark.parametrize("kind", sorted(NOT_RELEASES))
def test_gate_denies_until_migrated_and_never_blocks_other_edits(
    kind: str, kubectl: Kubectl, orders_db: FlywayHistory, new_namespace: NewNamespace
) -> None:
    ns = new_namespace("gate-kinds")
    doc = app_workload(kind, ns, "gate", GATE)
    target = f"{resource(doc)}/api"
    message = wording.behind(
        f"{ns}/api",
        "schema orders >= 42 (flyway)",
        "orders",
        "41 (applied 2026-11-20T10:00:00, time zone not recorded)",
    )

    denied = apply(kubectl, doc)
    assert denied.returncode != 0
    assert f"{wording.api_server_denied(WEBHOOK_NAME, message)}\n" in denied.stderr, denied.stderr
    assert kubectl.get(resource(doc), "api", ns) is None

    orders_db.record("42", datetime.datetime(2026, 11, 26, 8, 30, 0))
    try:
        admitted = apply(kubectl, doc)
        assert admitted.returncode == 0, admitted.stderr
        assert init_container_names(stored(kubectl, doc)) == []  # gate mode never injects
    finally:
        orders_db.delete("42")  # behind again: only releases may notice

    for args in [*NOT_RELEASES[kind], ["label", "team=payments"], ["annotate", "note=hi"]]:
        edited = kubectl(args[0], target, "-n", ns, *args[1:])
        assert edited.returncode == 0, (args, edited.stderr)
    if kind in ("StatefulSet", "ReplicaSet", "Rollout"):
        assert stored(kubectl, doc)["spec"]["replicas"] in (2, 3)

    changed = copy.deepcopy(doc)
    pod_spec(changed)["containers"][0]["image"] = "ghcr.io/example/api:1.1"
    refused = apply(kubectl, changed, "--dry-run=server")
    assert refused.returncode != 0
    if kind == "Job":
        # Not schemagate: a Job's template is immutable, its UPDATEs pass the webhook.
        assert "field is immutable" in refused.stderr, refused.stderr
        assert "admission webhook" not in refused.stderr
    else:
        assert "orders records 41" in refused.stderr, refused.stderr


# --- what is refused, and what passes untouched ---------------------------------------------


@pytest.mark.usefixtures("rollout_crd")
def test_a_rollout_with_workload_ref_is_refused_with_what_to_do(
    kubectl: Kubectl, new_namespace: NewNamespace
) -> None:
    ns = new_namespace("workload-ref")
    rollout = labelled(placed(FIXTURES[WORKLOAD_REF], ns), "inject", INJECT)
    refused = apply(kubectl, rollout)
    assert refused.returncode != 0
    denial = wording.api_server_denied(
        WEBHOOK_NAME,
        f"{ns}/rollout-ref-deployment: "
        "this Rollout takes its pod template from Deployment 'rollout-ref-deployment' "
        "(spec.workloadRef); put the label schemagate.dev/migrate and the schemagate "
        "annotations on that Deployment instead",
    )
    assert f"{denial}\n" in refused.stderr, refused.stderr
    # Done as it says: the Deployment labelled, the Rollout not.
    target = labelled(
        placed(FIXTURES["argo-rollouts__rollout-ref-deployment.deployment.yaml"], ns),
        "inject",
        INJECT,
    )
    assert apply(kubectl, target).returncode == 0
    assert init_container_names(stored(kubectl, target)) == [INJECTED]
    plain = apply(kubectl, placed(FIXTURES[WORKLOAD_REF], ns))
    assert plain.returncode == 0, plain.stderr


def test_replicasets_of_a_labelled_template_pass_untouched(
    kubectl: Kubectl, webhook: WebhookServer, new_namespace: NewNamespace
) -> None:
    """The label on the pod template too (kustomize commonLabels puts it there): the
    Deployment controller's ReplicaSets carry it and reach the webhook, which lets them
    pass, so each stays identical to its Deployment's template."""
    ns = new_namespace("owned")
    doc = app_workload("Deployment", ns, "inject", INJECT)
    doc["spec"]["template"]["metadata"]["labels"][LABEL] = "inject"
    passed = webhook.requests_total(operation="CREATE", mode="pass")
    assert apply(kubectl, doc).returncode == 0

    def replicasets() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = kubectl.json("get", "replicasets", "-n", ns)["items"]
        return found

    wait_for(f"the ReplicaSet of {ns}/api", lambda: len(replicasets()) == 1, timeout=60)
    (replicaset,) = replicasets()
    assert replicaset["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert init_container_names(replicaset) == [INJECTED]
    assert pod_spec(replicaset) == pod_spec(stored(kubectl, doc))
    assert webhook.requests_total(operation="CREATE", mode="pass") == passed + 1
    # Still one ReplicaSet once the controller has settled.
    wait_for(
        f"kube-controller-manager to observe {ns}/api",
        lambda: stored(kubectl, doc).get("status", {}).get("observedGeneration") == 1,
        timeout=30,
    )
    assert len(replicasets()) == 1
    assert pod_spec(replicasets()[0]) == pod_spec(replicaset)
