"""A second real migration tool on the node: Debian's sqitch in a Job, and the gate on it.

The webhook's database `test-sqitch` is the tier's PostgreSQL database `test` read as
sqitch's registry (tests/node/overlay/config.yaml). A gated Deployment that needs the
change `customers` is denied until a Job has deployed it with sqitch, then admitted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.harness import Kubectl, wait_for
from tests.node.stack import Stack
from tests.node.workloads import LABEL, dump
from tests.support.servers import PASSWORD

PROJECT = Path(__file__).with_name("sqitch")
DENIED = 'admission webhook "migrate.schemagate.dev" denied the request'


@pytest.fixture
def registry(stack: Stack) -> Iterator[str]:
    """Database `test` without sqitch's registry or the project's table."""
    url = stack.database_url
    _drop(url)
    yield url
    _drop(url)


def _drop(url: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("DROP SCHEMA IF EXISTS sqitch CASCADE")
        conn.execute("DROP TABLE IF EXISTS customers")


def project(namespace: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The sqitch project as a ConfigMap, and the volume items that lay it out again
    (ConfigMap keys cannot hold a `/`)."""
    paths = sorted(str(p.relative_to(PROJECT)) for p in PROJECT.rglob("*") if p.is_file())
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "sqitch-project", "namespace": namespace},
        "data": {path.replace("/", "_"): (PROJECT / path).read_text() for path in paths},
    }
    return configmap, [{"key": path.replace("/", "_"), "path": path} for path in paths]


def deploy_job(namespace: str, image: str, items: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "sqitch-deploy", "namespace": namespace},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "sqitch",
                            "image": image,
                            "command": ["sqitch", "deploy", "--verify"],
                            "workingDir": "/sqitch",
                            "env": [
                                _from_secret("SQITCH_TARGET", "target"),
                                _from_secret("PGPASSWORD", "password"),
                                {"name": "SQITCH_FULLNAME", "value": "schemagate tests"},
                                {"name": "SQITCH_EMAIL", "value": "dev@schemagate.dev"},
                            ],
                            "volumeMounts": [{"name": "project", "mountPath": "/sqitch"}],
                        }
                    ],
                    "volumes": [
                        {"name": "project", "configMap": {"name": "sqitch-project", "items": items}}
                    ],
                }
            },
        },
    }


def _from_secret(name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": "sqitch-db", "key": key}}}


def gated(namespace: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "customers",
            "namespace": namespace,
            "labels": {LABEL: "gate"},
            "annotations": {
                "schemagate.dev/tool": "sqitch",
                "schemagate.dev/database": "test-sqitch",
                "schemagate.dev/schema-version": "customers",
            },
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "customers"}},
            "template": {
                "metadata": {"labels": {"app": "customers"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {"name": "app", "image": image, "command": ["sleep", "2147483647"]}
                    ],
                },
            },
        },
    }


def test_sqitch_deploys_in_a_job_and_the_gate_follows_its_registry(
    stack: Stack, kube: Kubectl, namespace: Callable[[str], str], registry: str
) -> None:
    assert stack.postgres is not None
    ns = namespace("sqitch")
    target = f"db:pg://postgres@{stack.postgres.host}:{stack.postgres.port}/test"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "sqitch-db", "namespace": ns},
        "stringData": {"target": target, "password": PASSWORD},
    }
    manifest = dump([gated(ns, stack.images["busybox"].ref)])
    early = kube("apply", "-f", "-", stdin=manifest)
    assert early.returncode != 0
    assert f"{DENIED}: {ns}/customers needs " in early.stderr

    configmap, items = project(ns)
    job = deploy_job(ns, stack.images["tools"].ref, items)
    kube("apply", "-f", "-", stdin=dump([secret, configmap, job]), check=True)
    kube(
        "wait",
        "-n",
        ns,
        "--for=condition=complete",
        "job/sqitch-deploy",
        "--timeout=120s",
        check=True,
    )
    # sqitch's own account, read with kubectl, and its registry.
    out = kube("logs", "-n", ns, "job/sqitch-deploy", check=True).stdout
    assert "+ customers" in out and "ok" in out, out
    with psycopg.connect(registry, connect_timeout=5) as conn:
        rows = conn.execute("SELECT change FROM sqitch.changes").fetchall()
    assert rows == [("customers",)]

    def admitted() -> bool:
        return kube("apply", "-f", "-", stdin=manifest).returncode == 0

    wait_for("the gate to admit the sqitch-gated Deployment", admitted, timeout=10, interval=1)
    kube("rollout", "status", "-n", ns, "deployment/customers", "--timeout=120s", check=True)
