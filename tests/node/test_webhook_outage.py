"""The webhook's own failures, for real: its pods deleted, its Deployment restarted.

failurePolicy is Fail and the objectSelector opts in only labelled workloads: while no
pod answers, labelled applies are refused and every other apply goes through. A rolling
restart (maxUnavailable 0, the preStop pause) must fail no labelled apply at all.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import yaml

from tests.e2e.harness import Kubectl, wait_for
from tests.node.stack import NAMESPACE
from tests.node.workloads import WEBHOOK, wait_serving
from tests.support import summary

REFUSED = 'failed calling webhook "migrate.schemagate.dev"'


def workload(name: str, namespace: str, labelled: bool) -> str:
    """A Deployment with no replicas: admitted or not, it starts no pod."""
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            },
        },
    }
    if labelled:
        obj["metadata"]["labels"] = {"schemagate.dev/migrate": "inject"}
        obj["metadata"]["annotations"] = {"schemagate.dev/tool": "alembic"}
    return yaml.safe_dump(obj)


def test_labelled_applies_are_refused_while_no_pod_answers(kube: Kubectl) -> None:
    """Every webhook pod deleted, with none to replace them yet: its Deployment is held at
    0 replicas first (replacements start within seconds and would close the window)."""
    kube.ensure_namespace("outage")
    wait_serving(kube)
    kube("scale", "-n", NAMESPACE, "deployment/schemagate", "--replicas=0", check=True)
    kube(
        "delete",
        "pod",
        "-n",
        NAMESPACE,
        "-l",
        WEBHOOK,
        "--grace-period=0",
        "--force",
        "--wait=true",
        check=True,
    )
    try:
        labelled = kube(
            "create",
            "--dry-run=server",
            "-f",
            "-",
            stdin=workload("labelled", "outage", labelled=True),
        )
        plain = kube(
            "create",
            "--dry-run=server",
            "-f",
            "-",
            stdin=workload("plain", "outage", labelled=False),
        )
        assert labelled.returncode != 0
        assert REFUSED in labelled.stderr, labelled.stderr
        assert plain.returncode == 0, plain.stderr
    finally:
        kube("scale", "-n", NAMESPACE, "deployment/schemagate", "--replicas=2", check=True)
    wait_serving(kube)

    def admitted() -> bool:
        done = kube(
            "create",
            "--dry-run=server",
            "-f",
            "-",
            stdin=workload("labelled", "outage", labelled=True),
        )
        return done.returncode == 0

    wait_for("labelled applies to pass again", admitted, timeout=30)


def test_a_rolling_restart_fails_no_labelled_apply(kube: Kubectl) -> None:
    kube.ensure_namespace("restart")
    wait_serving(kube)
    results: list[tuple[str, int, str]] = []
    stop = threading.Event()

    def stream() -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            name = f"stream-{n}"
            done = kube("apply", "-f", "-", stdin=workload(name, "restart", labelled=True))
            results.append((name, done.returncode, done.stderr.strip()))
            time.sleep(0.2)

    worker = threading.Thread(target=stream, daemon=True)
    worker.start()
    try:
        time.sleep(2)
        started = time.monotonic()
        kube("rollout", "restart", "-n", NAMESPACE, "deployment/schemagate", check=True)
        wait_serving(kube)
        restart_seconds = time.monotonic() - started
        time.sleep(3)
    finally:
        stop.set()
        worker.join(timeout=60)
    failures = [r for r in results if r[1] != 0]
    summary.record_lines(
        "webhook rolling restart under a stream of labelled applies",
        f"  {len(results)} applies during a {restart_seconds:.1f} s restart, "
        f"{len(failures)} failed",
    )
    assert len(results) >= 20
    assert not failures, failures
    # Every apply was mutated by a pod of the webhook (the stored objects say so).
    stored = kube.json("get", "deployments", "-n", "restart")["items"]
    assert len(stored) == len(results)
    for obj in stored:
        names = [c["name"] for c in obj["spec"]["template"]["spec"].get("initContainers", [])]
        assert names == ["schemagate-migrate"], obj["metadata"]["name"]
