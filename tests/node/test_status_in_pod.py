"""`schemagate status` in the cluster, under an identity of its own: a Job with the
webhook's image, its configuration and its database Secret, and a ServiceAccount bound to
the shipped read-only ClusterRole (manifests/status). The serving pods hold no token at
all, so this is how a scheduled status check (a CronJob) runs; nothing is passed on the
command line but the namespace and the output format.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.e2e.harness import REPO, Kubectl, wait_for
from tests.node.stack import NAMESPACE, Stack
from tests.support import wording

ROLE = REPO / "manifests" / "status" / "clusterrole.yaml"
BINDING = "schemagate-status-in-pod"


STATUS = "schemagate-status"


@pytest.fixture
def status_identity(kube: Kubectl) -> Iterator[None]:
    kube("apply", "-f", str(ROLE), check=True)
    kube("create", "serviceaccount", STATUS, "-n", NAMESPACE, check=True)
    kube(
        "create",
        "clusterrolebinding",
        BINDING,
        "--clusterrole=schemagate-status",
        f"--serviceaccount={NAMESPACE}:{STATUS}",
        check=True,
    )
    yield
    kube("delete", "clusterrolebinding", BINDING, "--ignore-not-found", check=True)
    kube("delete", "serviceaccount", STATUS, "-n", NAMESPACE, "--ignore-not-found", check=True)


@pytest.fixture
def recorded_head(stack: Stack) -> Iterator[Callable[[str], None]]:
    """Sets the Alembic head database `test` records; the table is dropped afterwards."""

    def record(revision: str) -> None:
        with psycopg.connect(stack.database_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS alembic_version "
                "(version_num VARCHAR(32) NOT NULL PRIMARY KEY)"
            )
            conn.execute("DELETE FROM alembic_version")
            conn.execute("INSERT INTO alembic_version VALUES (%s)", (revision,))

    yield record
    with psycopg.connect(stack.database_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("DROP TABLE IF EXISTS alembic_version")


def gated(namespace: str, revision: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "app",
            "namespace": namespace,
            "labels": {"schemagate.dev/migrate": "gate"},
            "annotations": {
                "schemagate.dev/database": "test",
                "schemagate.dev/schema-version": revision,
            },
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "app"}},
            "template": {
                "metadata": {"labels": {"app": "app"}},
                "spec": {"containers": [{"name": "app", "image": "localhost/app:1"}]},
            },
        },
    }


def status_job(kube: Kubectl, name: str, namespace: str) -> tuple[int, str]:
    """Run `schemagate status -n NAMESPACE -o json` as a Job; its exit code and output."""
    serving = kube.json("get", "deployment", "schemagate", "-n", NAMESPACE)["spec"]["template"]
    server = serving["spec"]["containers"][0]
    config = next(v for v in serving["spec"]["volumes"] if v["name"] == "config")
    env = [e for e in server["env"] if e["name"] in ("SCHEMAGATE_CONFIG", "TEST_DATABASE_URL")]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "serviceAccountName": STATUS,
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "status",
                            "image": server["image"],
                            "args": ["status", "-n", namespace, "-o", "json"],
                            "env": env,
                            "volumeMounts": [
                                m for m in server["volumeMounts"] if m["name"] == "config"
                            ],
                        }
                    ],
                    "volumes": [config],
                }
            },
        },
    }
    kube.apply_objects([job])

    def ended() -> bool:
        status = kube.json("get", "job", name, "-n", NAMESPACE)["status"]
        return bool(status.get("succeeded") or status.get("failed"))

    wait_for(f"Job {name} to end", ended, timeout=90, interval=1)
    (pod,) = kube.json("get", "pods", "-n", NAMESPACE, "-l", f"job-name={name}")["items"]
    code = pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]
    out = kube("logs", "-n", NAMESPACE, f"job/{name}", check=True).stdout
    return int(code), out


def test_status_in_the_cluster_under_its_own_identity(
    kube: Kubectl,
    namespace: Callable[[str], str],
    status_identity: None,
    recorded_head: Callable[[str], None],
) -> None:
    ns = namespace("status-pod")
    recorded_head("r0002")
    kube.apply_objects([gated(ns, "r0002")])  # admitted by the webhook's pods: satisfied

    code, out = status_job(kube, "status-satisfied", ns)
    assert code == 0, out
    (row,) = json.loads(out)["workloads"]
    assert (row["name"], row["tool"], row["database"], row["needed"]) == (
        "app",
        "alembic",
        "test",
        "== r0002",
    )
    assert (row["recorded"], row["satisfied"], row["message"]) == ("r0002", "yes", None)

    recorded_head("r0001")  # e.g. the database restored from an older backup
    code, out = status_job(kube, "status-behind", ns)
    assert code == 1, out
    (row,) = json.loads(out)["workloads"]
    assert (row["recorded"], row["satisfied"]) == ("r0001", "no")
    assert row["message"] == wording.behind(
        f"{ns}/app",
        "schema test == r0002 (alembic)",
        "test",
        "head r0001",
        note=wording.ALEMBIC_HEADS_ONLY,
    )
