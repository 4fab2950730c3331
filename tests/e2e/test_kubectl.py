"""Issue 5, scenarios 1-8: what users meet, through kubectl against a real kube-apiserver.

Every expectation is read back from the API server as JSON (`kubectl get -o json`),
except where the scenario is about what kubectl prints (warnings, denial messages).
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.flyway import FlywayHistory
from tests.e2e.harness import (
    INHERITED,
    INJECTED,
    LABEL,
    WEBHOOK_CONFIGURATION,
    WEBHOOK_NAME,
    Kubectl,
    WebhookServer,
    init_container_names,
    injected,
    pod_spec,
    wait_for,
    warnings,
)
from tests.factories import deployment
from tests.support import wording

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("webhook")]

NewNamespace = Callable[[str], str]
SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
WAIT_FOR_DB = {
    "name": "wait-for-db",
    "image": "busybox:1.36",
    "command": ["sh", "-c", "until nc -z db 5432; do sleep 1; done"],
}


def app_deployment(
    name: str,
    namespace: str,
    *,
    mode: str | None = None,
    annotations: dict[str, str] | None = None,
    init_containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """tests.factories.deployment, plus the volume its app container mounts (the API server
    validates that; the webhook alone never did)."""
    doc = deployment(
        name, namespace, mode=mode, annotations=annotations, init_containers=init_containers
    )
    pod_spec(doc)["volumes"] = [{"name": "migrations", "configMap": {"name": "migrations"}}]
    return doc


def inject_deployment(name: str, namespace: str) -> dict[str, Any]:
    """A Deployment in inject mode (flyway) with one classic init container of its own."""
    return app_deployment(
        name,
        namespace,
        mode="inject",
        annotations={"schemagate.dev/tool": "flyway"},
        init_containers=[copy.deepcopy(WAIT_FOR_DB)],
    )


def expected_init_container(doc: dict[str, Any]) -> dict[str, Any]:
    """`schemagate-migrate` as issue 3 specifies it for `doc`, as the API server stores it.

    Inherited from the first app container: env, envFrom, volumeMounts, securityContext,
    resources, imagePullPolicy, workingDir; image: the app's; command: flyway's preset.
    """
    app = pod_spec(doc)["containers"][0]
    return {
        "name": INJECTED,
        "image": app["image"],
        "command": ["flyway", "migrate"],
        **{key: copy.deepcopy(app[key]) for key in INHERITED if key in app},
        # the API server's defaults for every container
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }


def write(tmp_path: Path, doc: dict[str, Any], name: str = "deployment.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def stored(kubectl: Kubectl, name: str, namespace: str) -> dict[str, Any]:
    found = kubectl.get("deployment", name, namespace)
    assert found is not None, f"deployment {namespace}/{name} was not stored"
    return found


def settled(kubectl: Kubectl, name: str, namespace: str) -> dict[str, Any]:
    """The Deployment once kube-controller-manager has seen its generation (and written its
    revision annotation), so later reads differ only by what the test itself did."""
    latest: dict[str, Any] = {}

    def seen() -> bool:
        nonlocal latest
        latest = stored(kubectl, name, namespace)
        meta, status = latest["metadata"], latest.get("status", {})
        return status.get("observedGeneration") == meta[
            "generation"
        ] and "deployment.kubernetes.io/revision" in meta.get("annotations", {})

    wait_for(f"kube-controller-manager to observe {namespace}/{name}", seen, timeout=30)
    return latest


def injection_warnings(stderr: str, doc: dict[str, Any]) -> list[str]:
    image = pod_spec(doc)["containers"][0]["image"]
    return [w for w in warnings(stderr) if INJECTED in w and image in w and "flyway migrate" in w]


# --- 1 ---------------------------------------------------------------------------------


def test_apply_injects_into_the_deployment_and_its_pods(
    kubectl: Kubectl, new_namespace: NewNamespace, tmp_path: Path
) -> None:
    ns = new_namespace("inject")
    doc = inject_deployment("api", ns)

    result = kubectl("apply", "-f", write(tmp_path, doc))

    assert result.returncode == 0, result.stderr
    assert injection_warnings(result.stderr, doc), (
        f"kubectl printed no warning naming {INJECTED}, its image and command:\n{result.stderr}"
    )
    deploy = stored(kubectl, "api", ns)
    assert init_container_names(deploy) == ["wait-for-db", INJECTED]
    assert injected(deploy) == expected_init_container(doc)
    # The app container is left as written (ports only gain the API server's default).
    [app] = pod_spec(deploy)["containers"]
    written = pod_spec(doc)["containers"][0]
    assert {k: v for k, v in app.items() if k in written and k != "ports"} == {
        k: v for k, v in written.items() if k != "ports"
    }

    # kube-controller-manager: Deployment -> ReplicaSet -> Pod, carrying the container too.
    def pod() -> dict[str, Any] | None:
        pods = kubectl.json("get", "pods", "-n", ns, "-l", "app=api")["items"]
        return pods[0] if pods else None

    wait_for(
        f"a Pod of {ns}/api from kube-controller-manager", lambda: pod() is not None, timeout=60
    )
    created = pod()
    assert created is not None
    assert init_container_names(created) == ["wait-for-db", INJECTED]
    in_pod = injected(created)
    assert in_pod is not None
    # Pod-level defaulting, the same for every container: the ServiceAccount admission
    # plugin adds the token mount, and resource requests default to the limits.
    in_pod["volumeMounts"] = [
        m for m in in_pod.get("volumeMounts", []) if m["mountPath"] != SERVICE_ACCOUNT_MOUNT
    ]
    app_in_pod = pod_spec(created)["containers"][0]
    assert app_in_pod["resources"] == {
        "limits": {"memory": "256Mi"},
        "requests": {"memory": "256Mi"},
    }
    assert in_pod == {**expected_init_container(doc), "resources": app_in_pod["resources"]}


# --- 2 ---------------------------------------------------------------------------------


def test_reapply_changes_nothing_and_diff_shows_no_drift(
    kubectl: Kubectl, new_namespace: NewNamespace, tmp_path: Path
) -> None:
    ns = new_namespace("reapply")
    path = write(tmp_path, inject_deployment("api", ns))
    assert kubectl("apply", "-f", path).returncode == 0
    before = settled(kubectl, "api", ns)

    again = kubectl("apply", "-f", path)
    after = stored(kubectl, "api", ns)
    diff = kubectl("diff", "-f", path)

    assert again.returncode == 0, again.stderr
    # (resourceVersion is no measure: kube-controller-manager keeps writing the status.)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert after["spec"] == before["spec"]
    assert injected(after) == injected(before) is not None
    assert (diff.returncode, diff.stdout) == (0, ""), f"kubectl diff found drift:\n{diff.stdout}"


# --- 3 ---------------------------------------------------------------------------------


def test_server_side_apply_as_argocd_behaves_the_same(
    kubectl: Kubectl, new_namespace: NewNamespace, tmp_path: Path
) -> None:
    ns = new_namespace("ssa")
    doc = inject_deployment("api", ns)
    path = write(tmp_path, doc)
    ssa = ("--server-side", "--field-manager=argocd-controller")

    first = kubectl("apply", *ssa, "-f", path)
    assert first.returncode == 0, first.stderr
    assert injection_warnings(first.stderr, doc), first.stderr
    before = settled(kubectl, "api", ns)
    assert init_container_names(before) == ["wait-for-db", INJECTED]
    assert injected(before) == expected_init_container(doc)
    fields = kubectl.json("get", "deployment", "api", "-n", ns, "--show-managed-fields")
    managers = {
        entry["manager"]: entry["operation"] for entry in fields["metadata"]["managedFields"]
    }
    assert managers.get("argocd-controller") == "Apply"

    again = kubectl("apply", *ssa, "-f", path)
    after = stored(kubectl, "api", ns)
    diff = kubectl("diff", *ssa, "-f", path)

    assert again.returncode == 0, again.stderr
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert injected(after) == expected_init_container(doc)
    assert (diff.returncode, diff.stdout) == (0, ""), f"kubectl diff found drift:\n{diff.stdout}"


# --- 4 ---------------------------------------------------------------------------------


def test_server_dry_run_returns_the_mutation_and_stores_nothing(
    kubectl: Kubectl,
    webhook: WebhookServer,
    orders_db: FlywayHistory,
    new_namespace: NewNamespace,
    tmp_path: Path,
) -> None:
    ns = new_namespace("dry-run")
    doc = inject_deployment("api", ns)
    gated = app_deployment(
        "gated",
        ns,
        mode="gate",
        annotations={
            "schemagate.dev/tool": "flyway",
            "schemagate.dev/database": "orders",
            "schemagate.dev/schema-version": "2",
        },
    )
    reviews_before = webhook.requests_total(operation="CREATE")
    database_before = orders_db.snapshot()

    inject = kubectl("apply", "--dry-run=server", "-o", "json", "-f", write(tmp_path, doc))
    gate = kubectl(
        "apply", "--dry-run=server", "-o", "json", "-f", write(tmp_path, gated, "gated.yaml")
    )

    assert inject.returncode == 0, inject.stderr
    assert gate.returncode == 0, gate.stderr
    returned = yaml.safe_load(inject.stdout)
    assert init_container_names(returned) == ["wait-for-db", INJECTED]
    assert injected(returned) == expected_init_container(doc)
    assert injection_warnings(inject.stderr, doc), inject.stderr
    # Both went through the webhook (dry run is no bypass) ...
    assert webhook.requests_total(operation="CREATE") >= reviews_before + 2
    # ... and nothing is left anywhere: no object, no ReplicaSet, no database change.
    assert kubectl.get("deployment", "api", ns) is None
    assert kubectl.get("deployment", "gated", ns) is None
    assert kubectl.json("get", "deployments,replicasets,pods", "-n", ns)["items"] == []
    assert orders_db.snapshot() == database_before


# --- 5 ---------------------------------------------------------------------------------


def test_gate_denies_until_migrated_and_never_blocks_scaling(
    kubectl: Kubectl, orders_db: FlywayHistory, new_namespace: NewNamespace, tmp_path: Path
) -> None:
    ns = new_namespace("shop")
    doc = app_deployment(
        "api",
        ns,
        mode="gate",
        annotations={
            "schemagate.dev/tool": "flyway",
            "schemagate.dev/database": "orders",
            "schemagate.dev/schema-version": "42",
        },
    )
    path = write(tmp_path, doc)
    message = wording.behind(
        f"{ns}/api",
        "schema orders >= 42 (flyway)",
        "orders",
        # Flyway's PostgreSQL installed_on is a zone-less timestamp: no zone is claimed.
        "41 (applied 2026-11-20T10:00:00, time zone not recorded)",
    )

    denied = kubectl("apply", "-f", path)

    assert denied.returncode != 0
    assert f"{wording.api_server_denied(WEBHOOK_NAME, message)}\n" in denied.stderr, denied.stderr
    assert kubectl.get("deployment", "api", ns) is None

    orders_db.record("42", datetime.datetime(2026, 11, 26, 8, 30, 0))
    try:
        admitted = kubectl("apply", "-f", path)
        assert admitted.returncode == 0, admitted.stderr
        created = stored(kubectl, "api", ns)
        assert injected(created) is None  # gate mode never injects
        assert created["metadata"]["labels"][LABEL] == "gate"
    finally:
        # The database is behind again (say, restored from a backup) ...
        orders_db.delete("42")

    # ... which the gate would refuse for a new template ...
    changed = copy.deepcopy(doc)
    pod_spec(changed)["containers"][0]["image"] = "ghcr.io/example/api:1.1"
    refused = kubectl("apply", "--dry-run=server", "-f", write(tmp_path, changed, "v1.1.yaml"))
    assert refused.returncode != 0
    assert "orders records 41" in refused.stderr, refused.stderr
    # ... but scaling goes through, by the scale subresource and by a plain update.
    scaled = kubectl("scale", "deployment/api", "-n", ns, "--replicas=3")
    assert scaled.returncode == 0, scaled.stderr
    assert stored(kubectl, "api", ns)["spec"]["replicas"] == 3
    patched = kubectl(
        "patch", "deployment/api", "-n", ns, "--type=merge", "-p", '{"spec": {"replicas": 2}}'
    )
    assert patched.returncode == 0, patched.stderr
    assert stored(kubectl, "api", ns)["spec"]["replicas"] == 2


def test_a_label_flip_from_inject_to_gate_is_gated(
    kubectl: Kubectl, new_namespace: NewNamespace, tmp_path: Path
) -> None:
    """Issue 13 item 1, as the trial ran it: `kubectl label ... migrate=gate --overwrite` on
    an injected Deployment rolls new pods (schemagate takes its init container out), so
    the gate judges it; orders records 41, the Deployment declares 99."""
    ns = new_namespace("flip")
    doc = app_deployment(
        "sw",
        ns,
        mode="inject",
        annotations={
            "schemagate.dev/tool": "flyway",
            "schemagate.dev/database": "orders",
            "schemagate.dev/schema-version": "99",
        },
    )
    assert kubectl("apply", "-f", write(tmp_path, doc)).returncode == 0
    before = stored(kubectl, "sw", ns)
    assert INJECTED in init_container_names(before)

    flipped = kubectl("label", "deploy", "sw", "-n", ns, f"{LABEL}=gate", "--overwrite")

    message = wording.behind(
        f"{ns}/sw",
        "schema orders >= 99 (flyway)",
        "orders",
        "41 (applied 2026-11-20T10:00:00, time zone not recorded)",
    )
    assert flipped.returncode != 0
    assert wording.api_server_denied(WEBHOOK_NAME, message) in flipped.stderr, flipped.stderr
    after = stored(kubectl, "sw", ns)
    assert after["metadata"]["labels"][LABEL] == "inject"
    assert pod_spec(after) == pod_spec(before)


# --- 6 ---------------------------------------------------------------------------------


def test_unlabelled_and_kube_system_deployments_never_reach_the_webhook(
    kubectl: Kubectl, webhook: WebhookServer, new_namespace: NewNamespace, tmp_path: Path
) -> None:
    ns = new_namespace("plain")
    plain = app_deployment("plain", ns)
    system = inject_deployment("schemagate-e2e-system", "kube-system")
    creates = webhook.requests_total(operation="CREATE")
    passed = webhook.requests_total(mode="pass")

    for name, doc in (("plain.yaml", plain), ("system.yaml", system)):
        result = kubectl("apply", "-f", write(tmp_path, doc, name))
        assert result.returncode == 0, result.stderr
        assert warnings(result.stderr) == []
    # An UPDATE of each, too.
    for name, doc in (("plain.yaml", plain), ("system.yaml", system)):
        doc["metadata"]["annotations"]["touched"] = "yes"
        assert kubectl("apply", "-f", write(tmp_path, doc, name)).returncode == 0

    assert init_container_names(stored(kubectl, "plain", ns)) == []
    assert init_container_names(stored(kubectl, "schemagate-e2e-system", "kube-system")) == [
        "wait-for-db"
    ]
    assert webhook.requests_total(operation="CREATE") == creates
    assert webhook.requests_total(mode="pass") == passed

    # The counter does move for a labelled Deployment elsewhere (the check above can fail).
    labelled = kubectl("apply", "-f", write(tmp_path, inject_deployment("api", ns), "api.yaml"))
    assert labelled.returncode == 0, labelled.stderr
    assert webhook.requests_total(operation="CREATE") == creates + 1


# --- 7 ---------------------------------------------------------------------------------


def test_removing_the_label_removes_the_injected_container(
    kubectl: Kubectl, new_namespace: NewNamespace, tmp_path: Path
) -> None:
    ns = new_namespace("unlabel")
    doc = inject_deployment("api", ns)
    assert kubectl("apply", "-f", write(tmp_path, doc)).returncode == 0
    assert init_container_names(stored(kubectl, "api", ns)) == ["wait-for-db", INJECTED]

    del doc["metadata"]["labels"][LABEL]
    result = kubectl("apply", "-f", write(tmp_path, doc))

    assert result.returncode == 0, result.stderr
    after = stored(kubectl, "api", ns)
    assert LABEL not in after["metadata"]["labels"]
    assert init_container_names(after) == ["wait-for-db"]
    assert pod_spec(after)["initContainers"][0]["image"] == WAIT_FOR_DB["image"]


# --- 8 ---------------------------------------------------------------------------------


def test_webhook_down_refuses_labelled_and_admits_unlabelled(
    kubectl: Kubectl, webhook: WebhookServer, new_namespace: NewNamespace, tmp_path: Path
) -> None:
    config = kubectl.json("get", "mutatingwebhookconfiguration", WEBHOOK_CONFIGURATION)
    [hook] = [w for w in config["webhooks"] if w["name"] == WEBHOOK_NAME]
    assert hook["failurePolicy"] == "Fail"
    ns = new_namespace("down")

    webhook.stop()
    try:
        refused = kubectl("apply", "-f", write(tmp_path, inject_deployment("api", ns)))
        plain = kubectl("apply", "-f", write(tmp_path, app_deployment("plain", ns), "plain.yaml"))
    finally:
        webhook.start()

    assert refused.returncode != 0
    assert (
        f'failed calling webhook "{WEBHOOK_NAME}": Post "https://127.0.0.1:{webhook.port}'
        in refused.stderr
    ), refused.stderr
    assert "connection refused" in refused.stderr, refused.stderr
    assert kubectl.get("deployment", "api", ns) is None
    assert plain.returncode == 0, plain.stderr
    assert init_container_names(stored(kubectl, "plain", ns)) == []
    # Back up: the same apply now goes through, mutated.
    again = kubectl("apply", "-f", write(tmp_path, inject_deployment("api", ns)))
    assert again.returncode == 0, again.stderr
    assert injected(stored(kubectl, "api", ns)) is not None
