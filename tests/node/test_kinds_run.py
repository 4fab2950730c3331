"""Kinds beyond Deployments, with pods that run: a StatefulSet and a Job in inject mode.

The injected init container is placed where each kind keeps its pod template, and the
kubelet runs it before the app: read from the container states, the app's own look at
the database, and Alembic's table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.e2e.harness import Kubectl
from tests.node.stack import Stack
from tests.node.workloads import (
    APP_SCRIPT,
    LABEL,
    MIGRATE,
    app_container,
    dump,
    first_line,
    migrations,
    migrations_volume,
    moment,
    pods,
    recorded,
    status_of,
)

INJECT = {"labels": {LABEL: "inject"}, "annotations": {"schemagate.dev/tool": "alembic"}}


def template(image: str, configmap: dict[str, Any], name: str, **pod: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [app_container(image, "db")],
            "volumes": [migrations_volume(configmap)],
            **pod,
        },
    }


def assert_migrated_first(kube: Kubectl, namespace: str, pod: dict[str, Any]) -> None:
    name = pod["metadata"]["name"]
    init = status_of(pod, MIGRATE)["state"]["terminated"]
    assert init["exitCode"] == 0, name
    app = status_of(pod, "app")["state"]
    started = (app.get("running") or app["terminated"])["startedAt"]
    assert moment(init["finishedAt"]) <= moment(started), name
    assert first_line(kube, namespace, name, "app") == "app found schema 0002"


def test_a_statefulset_migrates_before_each_pod_starts(
    stack: Stack,
    kube: Kubectl,
    namespace: Callable[[str], str],
    database: Callable[[str, str], str],
) -> None:
    ns = namespace("kinds-sts")
    url = database("kinds_sts", ns)
    release = migrations("migrations", ns, revisions=2)
    image = stack.images["tools"].ref
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "ledger", "namespace": ns, **INJECT},
        "spec": {
            "serviceName": "ledger",
            "replicas": 2,
            "selector": {"matchLabels": {"app": "ledger"}},
            "template": template(image, release, "ledger"),
        },
    }
    kube("apply", "-f", "-", stdin=dump([release, statefulset]), check=True)
    kube("rollout", "status", "-n", ns, "statefulset/ledger", "--timeout=180s", check=True)
    running = pods(kube, ns, "ledger")
    assert sorted(p["metadata"]["name"] for p in running) == ["ledger-0", "ledger-1"]
    for pod in running:
        assert_migrated_first(kube, ns, pod)
    assert recorded(url) == ["0002"]


def test_a_job_migrates_before_its_work_runs(
    stack: Stack,
    kube: Kubectl,
    namespace: Callable[[str], str],
    database: Callable[[str, str], str],
) -> None:
    ns = namespace("kinds-job")
    url = database("kinds_job", ns)
    release = migrations("migrations", ns, revisions=2)
    pod = template(stack.images["tools"].ref, release, "report", restartPolicy="Never")
    # A batch job does its work once and exits: the app's look at the schema, no loop.
    pod["spec"]["containers"][0]["command"][-1] = APP_SCRIPT.split("while True")[0]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "report", "namespace": ns, **INJECT},
        "spec": {"backoffLimit": 0, "template": pod},
    }
    kube("apply", "-f", "-", stdin=dump([release, job]), check=True)
    kube("wait", "-n", ns, "--for=condition=complete", "job/report", "--timeout=180s", check=True)
    (ran,) = pods(kube, ns, "report")
    assert [c["name"] for c in ran["spec"]["initContainers"]] == [MIGRATE]
    assert_migrated_first(kube, ns, ran)
    assert status_of(ran, "app")["state"]["terminated"]["exitCode"] == 0
    assert recorded(url) == ["0002"]
