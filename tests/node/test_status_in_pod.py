"""`schemagate status` inside the webhook's pod, as the README shows it: the pod's
service-account token (bound to the shipped read-only ClusterRole), its SCHEMAGATE_CONFIG
and the database URL from the webhook's own Secret; nothing is passed on the command line.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.e2e.harness import REPO, Kubectl, wait_for
from tests.node.stack import NAMESPACE, Stack

ROLE = REPO / "manifests" / "status" / "clusterrole.yaml"
BINDING = "schemagate-status-in-pod"


@pytest.fixture
def pod_may_list(kube: Kubectl) -> Iterator[None]:
    kube("apply", "-f", str(ROLE), check=True)
    kube(
        "create", "clusterrolebinding", BINDING, "--clusterrole=schemagate-status",
        f"--serviceaccount={NAMESPACE}:schemagate", check=True,
    )  # fmt: skip
    yield
    kube("delete", "clusterrolebinding", BINDING, "--ignore-not-found", check=True)


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


def status_in_pod(kube: Kubectl, namespace: str) -> subprocess.CompletedProcess[str]:
    return kube(
        "exec", "-n", NAMESPACE, "deploy/schemagate", "--",
        "schemagate", "status", "-n", namespace, "-o", "json",
    )  # fmt: skip


def test_status_from_inside_the_webhook_pod(
    kube: Kubectl,
    namespace: Callable[[str], str],
    pod_may_list: None,
    recorded_head: Callable[[str], None],
) -> None:
    ns = namespace("status-pod")
    recorded_head("r0002")
    kube.apply_objects([gated(ns, "r0002")])  # admitted by the webhook's pods: satisfied

    # RBAC picks up the new binding within moments; until then the listing is refused (2).
    wait_for("the binding to take effect", lambda: status_in_pod(kube, ns).returncode != 2)
    done = status_in_pod(kube, ns)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["workloads"]
    assert (row["name"], row["tool"], row["database"], row["needed"]) == (
        "app", "alembic", "test", "== r0002",
    )  # fmt: skip
    assert (row["recorded"], row["satisfied"], row["message"]) == ("r0002", "yes", None)

    recorded_head("r0001")  # e.g. the database restored from an older backup
    behind = status_in_pod(kube, ns)
    assert behind.returncode == 1, behind.stderr
    (row,) = json.loads(behind.stdout)["workloads"]
    assert (row["recorded"], row["satisfied"]) == ("r0001", "no")
    assert row["message"] == (
        f"{ns}/app needs schema test == r0002 (alembic); test records head r0001. "
        "Run the migrations first, then re-apply."
    )
