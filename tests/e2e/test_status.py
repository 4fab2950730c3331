"""`schemagate status` against the real API server (v1.20) and a real PostgreSQL, run as an
operator who holds only the shipped read-only ClusterRole (manifests/status/).

The workloads are stored while no mutating webhook is registered: they stand for
workloads that predate the webhook, or whose database was restored from an older backup.
The webhook would refuse some of them today, which is exactly what status must show.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.controlplane import ControlPlane
from tests.e2e.flyway import FlywayHistory
from tests.e2e.harness import (
    REPO,
    WEBHOOK_CONFIGURATION,
    Kubectl,
    injected,
    unreachable_kubeconfig,
    wait_for,
)
from tests.support import wording
from tests.support.servers import PostgresServer

pytestmark = pytest.mark.e2e

ROLE = REPO / "manifests" / "status" / "clusterrole.yaml"
OPERATOR = "sre-status"
LABEL = "schemagate.dev/migrate"
RECORDED_41 = datetime.datetime(2026, 11, 20, 10, 0)
# Nothing listens on port 1: the database `ledger` cannot be read, and says so exactly.
# Tenants and status see the kind of failure; the driver's detail is in the log only.
UNREACHABLE = "connection refused"  # the kind of failure the webhook names


def pod_template(name: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": f"example/{name}:1"}]},
    }


def gate(database: str, version: str) -> dict[str, str]:
    return {"schemagate.dev/database": database, "schemagate.dev/schema-version": version}


def deployment(name: str, annotations: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": dict(annotations)},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name),
        },
    }


def cronjob(name: str, annotations: Mapping[str, str]) -> dict[str, Any]:
    """batch/v1beta1: the only CronJob version Kubernetes 1.20 serves."""
    template = pod_template(name)
    template["spec"]["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1beta1",
        "kind": "CronJob",
        "metadata": {"name": name, "annotations": dict(annotations)},
        "spec": {
            "schedule": "0 3 * * *",
            "suspend": True,
            "jobTemplate": {"spec": {"template": template}},
        },
    }


@contextlib.contextmanager
def admission_suspended(kubectl: Kubectl, probe_namespace: str) -> Iterator[None]:
    """Every MutatingWebhookConfiguration removed, then put back as it was; the project's
    own (registered by the `webhook` fixture when another test asked for it) is probed
    until the API server calls it again, so later tests find it as they expect."""
    saved = kubectl.json("get", "mutatingwebhookconfigurations")["items"]
    for configuration in saved:
        name = configuration["metadata"]["name"]
        kubectl("delete", "mutatingwebhookconfiguration", name, check=True)
    try:
        yield
    finally:
        if saved:
            kubectl.apply_objects([_as_written(c) for c in saved])
        if any(c["metadata"]["name"] == WEBHOOK_CONFIGURATION for c in saved):
            wait_for(
                "the API server to call the webhook again",
                lambda: _mutated(kubectl, probe_namespace),
            )


def _as_written(stored: Mapping[str, Any]) -> dict[str, Any]:
    meta = stored["metadata"]
    kept = {k: meta[k] for k in ("name", "labels", "annotations") if k in meta}
    return {**stored, "metadata": kept}


def _mutated(kubectl: Kubectl, namespace: str) -> bool:
    probe = deployment("probe", {"schemagate.dev/tool": "flyway"})
    probe["metadata"]["labels"] = {LABEL: "inject"}
    done = kubectl(
        "create",
        "--dry-run=server",
        "-o",
        "json",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps(probe),
    )
    return done.returncode == 0 and injected(json.loads(done.stdout)) is not None


def store(kubectl: Kubectl, namespace: str, objects: Sequence[dict[str, Any]]) -> None:
    """Apply until the API server no longer calls a removed webhook: it drops a deleted
    configuration asynchronously, and an apply is idempotent."""
    listing = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})

    def stored() -> bool:
        return kubectl("apply", "-n", namespace, "-f", "-", stdin=listing).returncode == 0

    wait_for(f"the workloads to be stored in {namespace}", stored)


def labelled(obj: dict[str, Any], mode: str) -> dict[str, Any]:
    obj["metadata"]["labels"] = {LABEL: mode}
    return obj


@pytest.fixture(scope="module")
def scene(
    cluster: ControlPlane,
    kubectl: Kubectl,
    postgres: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """Two namespaces: `ready` (all satisfied) and `behind` (one unsatisfied, one unreadable)."""
    postgres.create_database("e2e_status_billing")
    billing = FlywayHistory(postgres.url("e2e_status_billing"))
    billing.create()
    billing.record("1", RECORDED_41 - datetime.timedelta(days=30))
    billing.record("41", RECORDED_41)

    kubectl("apply", "-f", str(ROLE), check=True)
    kubectl(
        "create", "clusterrolebinding", OPERATOR, "--clusterrole=schemagate-status",
        f"--user={OPERATOR}", check=True,
    )  # fmt: skip
    work = tmp_path_factory.mktemp("status")
    config = work / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "databases": {
                    "billing": {"url_env": "BILLING_URL", "tool": "flyway", "namespaces": ["*"]},
                    "ledger": {
                        "url": "postgresql://gate:secret@127.0.0.1:1/ledger",
                        "tool": "flyway",
                        "namespaces": ["*"],
                    },
                },
                "lookup": {"timeout_seconds": 2, "cache_ttl_seconds": 5},
            }
        )
    )
    ready, behind = "status-ready", "status-behind"
    for namespace in (ready, behind):
        kubectl.ensure_namespace(namespace)
    with admission_suspended(kubectl, ready):
        store(
            kubectl,
            ready,
            [
                labelled(deployment("paid", gate("billing", "41")), "gate"),
                labelled(cronjob("nightly", gate("billing", "2")), "gate"),
                labelled(deployment("web", {"schemagate.dev/tool": "flyway"}), "inject"),
                deployment("plain", {}),
            ],
        )
        store(
            kubectl,
            behind,
            [
                labelled(deployment("pending", gate("billing", "42")), "gate"),
                labelled(deployment("offline", gate("ledger", "7")), "gate"),
                labelled(deployment("typo", gate("biling", "3")), "gate"),
            ],
        )
    return {
        "ready": ready,
        "behind": behind,
        "config": config,
        "operator": cluster.user_kubeconfig(OPERATOR),
        "env": {"BILLING_URL": billing.dsn},
        "billing": billing,
    }


def status(
    scene: Mapping[str, Any], *args: str, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "webhook", "status",
            "--kubeconfig", str(kubeconfig or scene["operator"]),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "SCHEMAGATE_CONFIG": str(scene["config"]), **scene["env"]},
    )  # fmt: skip


def test_satisfied_namespace_exits_0_with_a_table(scene: Mapping[str, Any]) -> None:
    ns = scene["ready"]
    done = status(scene, "-n", ns)
    assert (done.returncode, done.stderr) == (0, "")
    # Columns are at least three spaces apart; a cell never holds three spaces.
    header, *table = [
        re.split(r" {3,}", line) for line in done.stdout.split("\n\n")[0].splitlines()
    ]
    assert header == [
        "NAMESPACE", "NAME", "KIND", "MODE", "TOOL", "DATABASE", "NEEDED", "RECORDED", "SATISFIED",
    ]  # fmt: skip
    rows = {row[1]: row for row in table}
    assert {row[0] for row in table} == {ns}
    assert set(rows) == {"paid", "nightly", "web"}, "the unlabelled Deployment is not listed"
    assert rows["paid"] == [
        ns,
        "paid",
        "Deployment",
        "gate",
        "flyway",
        "billing",
        ">= 41",
        "41",
        "yes",
    ]
    assert rows["web"] == [ns, "web", "Deployment", "inject", "flyway", "-", "-", "-", "-"]
    assert rows["nightly"][2:4] == ["CronJob", "gate"]


def test_rows_as_json(scene: Mapping[str, Any]) -> None:
    ready, behind = scene["ready"], scene["behind"]
    done = status(scene, "-o", "json")
    assert done.returncode == 1, done.stderr
    rows = {(r["namespace"], r["name"]): r for r in json.loads(done.stdout)["workloads"]}
    assert rows[(ready, "paid")] == {
        "namespace": ready,
        "name": "paid",
        "kind": "Deployment",
        "api_version": "apps/v1",
        "mode": "gate",
        "tool": "flyway",
        "database": "billing",
        "needed": ">= 41",
        "recorded": "41",
        "satisfied": "yes",
        "message": None,
    }
    assert rows[(behind, "pending")] == {
        "namespace": behind,
        "name": "pending",
        "kind": "Deployment",
        "api_version": "apps/v1",
        "mode": "gate",
        "tool": "flyway",
        "database": "billing",
        "needed": ">= 42",
        "recorded": "41",
        "satisfied": "no",
        "message": wording.behind(
            f"{behind}/pending",
            "schema billing >= 42 (flyway)",
            "billing",
            "41 (applied 2026-11-20T10:00:00, time zone not recorded)",
        ),
    }
    assert rows[(behind, "offline")] == {
        "namespace": behind,
        "name": "offline",
        "kind": "Deployment",
        "api_version": "apps/v1",
        "mode": "gate",
        "tool": "flyway",
        "database": "ledger",
        "needed": ">= 7",
        "recorded": "unreachable",
        "satisfied": "unknown",
        "message": wording.unreachable_closed(
            f"{behind}/offline", "schema ledger >= 7 (flyway)", "ledger", UNREACHABLE
        ),
    }
    assert rows[(behind, "typo")] == {
        "namespace": behind,
        "name": "typo",
        "kind": "Deployment",
        "api_version": "apps/v1",
        "mode": "gate",
        "tool": None,
        "database": "biling",
        "needed": "3",
        "recorded": None,
        "satisfied": "no",
        "message": f"{behind}/typo: annotation schemagate.dev/database: unknown database "
        f"'biling'; namespace '{behind}' may use: billing, ledger",
    }
    assert "secret" not in done.stdout
    inject = rows[(ready, "web")]
    assert (inject["mode"], inject["tool"], inject["satisfied"], inject["message"]) == (
        "inject", "flyway", "-", None,
    )  # fmt: skip
    nightly = rows[(ready, "nightly")]
    assert (nightly["kind"], nightly["api_version"], nightly["mode"]) == (
        "CronJob", "batch/v1beta1", "gate",
    )  # fmt: skip
    assert (ready, "plain") not in rows


def test_unsatisfied_namespace_exits_1_as_yaml(scene: Mapping[str, Any]) -> None:
    behind = scene["behind"]
    done = status(scene, "-n", behind, "-o", "yaml")
    assert done.returncode == 1, done.stderr
    rows = yaml.safe_load(done.stdout)["workloads"]
    assert [(r["name"], r["satisfied"]) for r in rows] == [
        ("offline", "unknown"),
        ("pending", "no"),
        ("typo", "no"),
    ]


def test_migrating_satisfies_the_gate(scene: Mapping[str, Any]) -> None:
    behind, billing = scene["behind"], scene["billing"]
    billing.record("42", RECORDED_41 + datetime.timedelta(days=1))
    try:
        done = status(scene, "-n", behind, "-o", "json")
    finally:
        billing.delete("42")
    rows = {r["name"]: r for r in json.loads(done.stdout)["workloads"]}
    assert (rows["pending"]["satisfied"], rows["pending"]["recorded"]) == ("yes", "42")
    assert done.returncode == 1, "ledger still cannot be read"


def test_table_notes_say_why(scene: Mapping[str, Any]) -> None:
    behind = scene["behind"]
    done = status(scene, "-n", behind)
    assert done.returncode == 1
    notes = done.stdout.split("\n\n", 1)[1].splitlines()
    assert notes == [
        f"{behind}/offline (Deployment): "
        + wording.unreachable_closed(
            f"{behind}/offline", "schema ledger >= 7 (flyway)", "ledger", UNREACHABLE
        ),
        f"{behind}/pending (Deployment): "
        + wording.behind(
            f"{behind}/pending",
            "schema billing >= 42 (flyway)",
            "billing",
            "41 (applied 2026-11-20T10:00:00, time zone not recorded)",
        ),
        f"{behind}/typo (Deployment): {behind}/typo: annotation schemagate.dev/database: "
        "unknown database 'biling'; "
        f"namespace '{behind}' may use: billing, ledger",
    ]


def test_without_the_role_the_error_names_it(
    scene: Mapping[str, Any], cluster: ControlPlane
) -> None:
    done = status(scene, kubeconfig=cluster.user_kubeconfig("nobody"))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "schemagate: cannot list deployments.apps/v1: 403 Forbidden: deployments.apps is "
        'forbidden: User "nobody" cannot list resource "deployments" in API group "apps" at '
        "the cluster scope (bind the ClusterRole schemagate-status to this user)\n"
    )


def test_unreachable_api_server(scene: Mapping[str, Any], tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    port = unreachable_kubeconfig(kubeconfig)
    done = status(scene, kubeconfig=kubeconfig)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("schemagate: cannot reach the API server: "), done.stderr
    assert f"127.0.0.1:{port}" in done.stderr


ROLLOUT_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "rollouts.argoproj.io"},
    "spec": {
        "group": "argoproj.io",
        "names": {"kind": "Rollout", "plural": "rollouts", "singular": "rollout"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                # Argo's own schema is large; the API server needs only a structural one.
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def test_rollouts_are_listed_once_their_crd_exists(
    scene: Mapping[str, Any], kubectl: Kubectl
) -> None:
    """Every other test runs without the CRD (and lists no Rollouts without failing)."""
    namespace = "status-rollouts"
    kubectl.ensure_namespace(namespace)
    kubectl.apply_objects([ROLLOUT_CRD])
    try:
        kubectl(
            "wait",
            "--for=condition=established",
            "crd/rollouts.argoproj.io",
            "--timeout=30s",
            check=True,
        )
        rollout = deployment("canary", gate("billing", "41"))
        rollout["apiVersion"], rollout["kind"] = "argoproj.io/v1alpha1", "Rollout"
        with admission_suspended(kubectl, namespace):
            store(kubectl, namespace, [labelled(rollout, "gate")])
        done = status(scene, "-n", namespace, "-o", "json")
        (row,) = json.loads(done.stdout)["workloads"]
        assert (row["name"], row["kind"], row["api_version"], row["mode"]) == (
            "canary", "Rollout", "argoproj.io/v1alpha1", "gate",
        )  # fmt: skip
    finally:
        kubectl("delete", "crd", "rollouts.argoproj.io", "--ignore-not-found", "--wait=true")


def test_a_rolebinding_is_enough_for_its_namespace(
    scene: Mapping[str, Any], kubectl: Kubectl, cluster: ControlPlane
) -> None:
    """A team bound to the ClusterRole in its own namespace sees that namespace only."""
    behind, team = scene["behind"], "team-behind"
    kubectl(
        "create", "rolebinding", team, "-n", behind, "--clusterrole=schemagate-status",
        f"--user={team}", check=True,
    )  # fmt: skip
    kubeconfig = cluster.user_kubeconfig(team)
    own = status(scene, "-n", behind, "-o", "json", kubeconfig=kubeconfig)
    assert own.returncode == 1, own.stderr
    assert {r["namespace"] for r in json.loads(own.stdout)["workloads"]} == {behind}
    everywhere = status(scene, kubeconfig=kubeconfig)
    assert everywhere.returncode == 2
    assert everywhere.stderr.startswith(
        "schemagate: cannot list deployments.apps/v1: 403 Forbidden: deployments.apps is "
        f'forbidden: User "{team}" cannot list'
    )
