"""Gate mode with a real migration Job: a release is held until the Job has migrated.

Database `test` (the webhook's configuration, tests/node/overlay/config.yaml) is the
tier's PostgreSQL; each test starts it empty. The Job really runs Alembic in a pod, and
what is asserted comes from the API server (denials, Job conditions, rollouts) and from
Alembic's own table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.e2e.harness import Kubectl, wait_for
from tests.node.stack import Stack
from tests.node.workloads import (
    LABEL,
    deployment,
    dump,
    migrations,
    migrations_volume,
    recorded,
    secret,
)
from tests.support import wording

EXAMPLES = Path(__file__).with_name("examples")
DENIED = 'admission webhook "migrate.schemagate.dev" denied the request'
# A GitOps tool retries a denied apply; the gate must admit soon after the Job is done.
ADMIT_WITHIN = 10.0


@pytest.fixture
def test_database(stack: Stack) -> Iterator[str]:
    """Database `test`, emptied of what an earlier test migrated."""
    url = stack.database_url
    _empty(url)
    yield url
    _empty(url)


def _empty(url: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("DROP TABLE IF EXISTS alembic_version, orders")


def presync_job(namespace: str, image: str, configmap: dict[str, Any]) -> dict[str, Any]:
    """Shaped like an Argo CD PreSync hook Job; plain kubectl ignores the hook annotations."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "orders-migrate",
            "namespace": namespace,
            "annotations": {
                "argocd.argoproj.io/hook": "PreSync",
                "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
            },
        },
        "spec": {
            "backoffLimit": 2,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "alembic",
                            "image": image,
                            "command": ["alembic", "upgrade", "head"],
                            "workingDir": "/migrations",
                            "env": [
                                {
                                    "name": "DATABASE_URL",
                                    "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}},
                                },
                                # Long enough that the Deployment arrives while it runs.
                                {"name": "MIGRATION_SECONDS", "value": "8"},
                            ],
                            "volumeMounts": [{"name": "migrations", "mountPath": "/migrations"}],
                        }
                    ],
                    "volumes": [migrations_volume(configmap)],
                }
            },
        },
    }


def gated(namespace: str, image: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "orders",
            "namespace": namespace,
            "labels": {LABEL: "gate"},
            "annotations": {
                "schemagate.dev/tool": "alembic",
                "schemagate.dev/database": "test",
                "schemagate.dev/schema-version": version,
            },
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "orders"}},
            "template": {
                "metadata": {"labels": {"app": "orders"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {"name": "app", "image": image, "command": ["sleep", "2147483647"]}
                    ],
                },
            },
        },
    }


def apply_until_admitted(kube: Kubectl, manifest: str, timeout: float) -> float:
    """Re-apply as a GitOps retry would, every second; the seconds until admitted."""
    started = time.monotonic()
    while True:
        done = kube("apply", "-f", "-", stdin=manifest)
        if done.returncode == 0:
            return time.monotonic() - started
        assert DENIED in done.stderr, done.stderr
        if time.monotonic() - started > timeout:
            pytest.fail(f"still denied {timeout:.0f} s after the migration: {done.stderr}")
        time.sleep(1)


def test_a_release_waits_for_the_presync_migration_job(
    stack: Stack,
    kube: Kubectl,
    namespace: Callable[[str], str],
    test_database: str,
) -> None:
    ns = namespace("presync")
    release = migrations("migrations", ns, revisions=2)
    kube("apply", "-f", "-", stdin=dump([secret("db", ns, test_database), release]), check=True)
    kube(
        "apply",
        "-f",
        "-",
        stdin=dump([presync_job(ns, stack.images["tools"].ref, release)]),
        check=True,
    )
    manifest = dump([gated(ns, stack.images["busybox"].ref, "0002")])

    early = kube("apply", "-f", "-", stdin=manifest)
    assert early.returncode != 0
    assert (
        f"{DENIED}: "
        + wording.no_migrations(f"{ns}/orders", "schema test == 0002 (alembic)", "test")
    ) in early.stderr
    assert kube.get("deployment", "orders", ns) is None

    kube(
        "wait",
        "-n",
        ns,
        "--for=condition=complete",
        "job/orders-migrate",
        "--timeout=120s",
        check=True,
    )
    assert recorded(test_database) == ["0002"]
    assert apply_until_admitted(kube, manifest, ADMIT_WITHIN) <= ADMIT_WITHIN
    kube("rollout", "status", "-n", ns, "deployment/orders", "--timeout=120s", check=True)


def test_the_sync_waves_example_runs_wave_by_wave(kube: Kubectl, test_database: str) -> None:
    """Wave 1 (the Job) is applied and must complete before wave 2, as Argo CD does."""
    ns = "example-sync-waves"
    rendered = kube("kustomize", str(EXAMPLES / "sync-waves"), check=True).stdout
    objects = [d for d in yaml.safe_load_all(rendered) if d]
    waves: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        wave = obj["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0")
        waves.setdefault(wave, []).append(obj)
    assert sorted(waves) == ["1", "2"]
    _prepare(kube, ns, test_database)

    kube("apply", "-f", "-", stdin=dump(waves["1"]), check=True)
    (job,) = waves["1"]
    kube(
        "wait",
        "-n",
        ns,
        "--for=condition=complete",
        f"job/{job['metadata']['name']}",
        "--timeout=120s",
        check=True,
    )
    assert recorded(test_database) == ["0002"]
    assert apply_until_admitted(kube, dump(waves["2"]), ADMIT_WITHIN) <= ADMIT_WITHIN
    kube("rollout", "status", "-n", ns, "deployment/orders", "--timeout=120s", check=True)


def test_the_init_container_example_migrates_in_each_pod(kube: Kubectl, test_database: str) -> None:
    ns = "example-init-container"
    _prepare(kube, ns, test_database)
    kube("apply", "-k", str(EXAMPLES / "init-container"), check=True)
    kube("rollout", "status", "-n", ns, "deployment/orders", "--timeout=180s", check=True)
    assert recorded(test_database) == ["0002"]
    pods = kube.json("get", "pods", "-n", ns)["items"]
    for pod in pods:
        (migrate,) = pod["status"]["initContainerStatuses"]
        assert migrate["name"] == "schemagate-migrate"
        assert migrate["state"]["terminated"]["exitCode"] == 0


def _prepare(kube: Kubectl, namespace: str, url: str) -> None:
    """The namespace and what the examples refer to: Secret `db` and ConfigMap
    `migrations` (the overlays' Alembic), Secret `orders-db-app` (the app's own, in the
    sync-wave example)."""
    kube.ensure_namespace(namespace)
    objects = [secret(n, namespace, url) for n in ("db", "orders-db-app")]
    kube(
        "apply",
        "-f",
        "-",
        check=True,
        stdin=dump([*objects, migrations("migrations", namespace, 2)]),
    )


def test_the_gate_admits_once_a_run_once_job_has_recorded_the_version(
    stack: Stack,
    kube: Kubectl,
    namespace: Callable[[str], str],
    test_database: str,
) -> None:
    """`run: once` in one namespace migrates database `test`; a workload gated on it in
    another namespace is refused until that Job has run, then admitted."""
    runs = namespace("runs-once")
    release = migrations("migrations", runs, revisions=2)
    once = deployment(
        "orders",
        runs,
        image=stack.images["tools"].ref,
        configmap=release,
        database_secret="db",
        replicas=1,
        annotations={"schemagate.dev/tool": "alembic", "schemagate.dev/run": "once"},
    )
    elsewhere = namespace("gated")
    manifest = dump([gated(elsewhere, stack.images["busybox"].ref, "0002")])
    assert DENIED in kube("apply", "-f", "-", stdin=manifest).stderr
    kube(
        "apply",
        "-f",
        "-",
        stdin=dump([secret("db", runs, test_database), release, once]),
        check=True,
    )
    wait_for(
        "the run-once Job",
        lambda: bool(kube.json("get", "jobs", "-n", runs)["items"]),
        timeout=60,
    )
    kube("wait", "-n", runs, "--for=condition=complete", "job", "--all", "--timeout=120s",
         check=True)  # fmt: skip
    assert recorded(test_database) == ["0002"]
    assert apply_until_admitted(kube, manifest, ADMIT_WITHIN) <= ADMIT_WITHIN
    kube("rollout", "status", "-n", runs, "deployment/orders", "--timeout=120s", check=True)
