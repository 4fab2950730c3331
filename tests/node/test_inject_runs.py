"""Inject mode with pods that run: a real Alembic migration in the injected init container.

Every claim is read from what the cluster and the database recorded: the kubelet's
container states and timestamps, the containers' logs, and Alembic's own table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.e2e.harness import Kubectl, wait_for
from tests.node.stack import Stack
from tests.node.workloads import (
    MIGRATE,
    columns,
    count_runs,
    deployment,
    dump,
    first_line,
    logs,
    maybe_status,
    migrations,
    moment,
    pods,
    previous_logs,
    recorded,
    runs_started,
    status_of,
)
from tests.support import summary


def roll_out(kube: Kubectl, namespace: str, objects: list[dict[str, Any]], name: str) -> float:
    started = time.monotonic()
    kube("apply", "-f", "-", stdin=dump(objects), check=True)
    kube("rollout", "status", "-n", namespace, f"deployment/{name}", "--timeout=180s", check=True)
    return time.monotonic() - started


def current_pods(kube: Kubectl, namespace: str, app: str) -> list[dict[str, Any]]:
    return [p for p in pods(kube, namespace, app) if not p["metadata"].get("deletionTimestamp")]


def test_every_pod_migrates_before_its_app_starts(
    stack: Stack,
    kube: Kubectl,
    namespace: Callable[[str], str],
    database: Callable[[str, str], str],
) -> None:
    ns = namespace("inject")
    url = database("inject_a", ns)
    release = migrations("migrations-1", ns, revisions=2)
    app = deployment(
        "orders", ns, image=stack.images["tools"].ref, configmap=release, database_secret="db"
    )
    roll_out(kube, ns, [release, app], "orders")

    running = current_pods(kube, ns, "orders")
    assert len(running) == 3
    for pod in running:
        name = pod["metadata"]["name"]
        init = status_of(pod, MIGRATE)["state"]["terminated"]
        assert init["exitCode"] == 0
        started = status_of(pod, "app")["state"]["running"]["startedAt"]
        assert moment(init["finishedAt"]) <= moment(started), name
        # The app's own first look at the database: the schema was already at head.
        assert first_line(kube, ns, name, "app") == "app found schema 0002"
    assert recorded(url) == ["0002"]
    assert columns(url, "orders") == ["id", "total", "status"]
    # The tool's output is readable with kubectl (the node's address is the gateway).
    ran = [logs(kube, ns, p["metadata"]["name"], MIGRATE) for p in running]
    assert any("Running upgrade 0001 -> 0002" in out for out in ran), ran


def test_a_failed_migration_leaves_the_old_release_serving(
    stack: Stack,
    kube: Kubectl,
    namespace: Callable[[str], str],
    database: Callable[[str, str], str],
) -> None:
    ns = namespace("failed")
    url = database("inject_b", ns)
    image = stack.images["tools"].ref
    first = migrations("migrations-1", ns, revisions=2)
    roll_out(
        kube,
        ns,
        [first, deployment("orders", ns, image=image, configmap=first, database_secret="db")],
        "orders",
    )
    old = {p["metadata"]["name"] for p in current_pods(kube, ns, "orders")}

    broken = migrations("migrations-2", ns, revisions=3)
    kube(
        "apply",
        "-f",
        "-",
        stdin=dump(
            [broken, deployment("orders", ns, image=image, configmap=broken, database_secret="db")]
        ),
        check=True,
    )

    def new_pods() -> list[dict[str, Any]]:
        return [p for p in current_pods(kube, ns, "orders") if p["metadata"]["name"] not in old]

    def failed_twice() -> bool:
        found = new_pods()
        migrate = maybe_status(found[0], MIGRATE) if found else None
        return migrate is not None and migrate.get("restartCount", 0) >= 2

    wait_for("the new release's migration to fail twice", failed_twice, timeout=120)
    (new,) = new_pods()  # maxSurge 1, maxUnavailable 0: one new pod, stuck
    name = new["metadata"]["name"]
    migrate = status_of(new, MIGRATE)
    assert migrate["lastState"]["terminated"]["exitCode"] != 0
    app = status_of(new, "app")
    assert "running" not in app["state"] and "terminated" not in app["state"]
    assert not app.get("lastState"), "the app container of the failed release started"
    assert app["state"]["waiting"]["reason"] == "PodInitializing"
    # The old release keeps serving: the same three pods, all ready.
    still = current_pods(kube, ns, "orders")
    assert {p["metadata"]["name"] for p in still} == old | {name}
    for pod in still:
        if pod["metadata"]["name"] in old:
            assert status_of(pod, "app")["ready"] is True
    assert recorded(url) == ["0002"]
    assert "placed_at" not in columns(url, "orders")
    # What a person sees with kubectl.
    rollout = kube("rollout", "status", "-n", ns, "deployment/orders", "--timeout=3s")
    assert rollout.returncode != 0
    assert "1 out of 3 new replicas have been updated" in rollout.stdout + rollout.stderr
    listing = kube("get", "pods", "-n", ns, name, check=True).stdout
    assert "Init:Error" in listing or "Init:CrashLoopBackOff" in listing, listing
    # The last failed run's output, with kubectl: the current instance's log while it is
    # backing off; the previous one's while it runs again (the kubelet prunes older ones).
    error = 'column "created_at" does not exist'

    def failure_readable() -> bool:
        found = kube("logs", "-n", ns, name, "-c", MIGRATE).stdout
        return error in found or error in (previous_logs(kube, ns, name, MIGRATE) or "")

    wait_for("the failure in the migration's log", failure_readable, timeout=60, interval=1)


def test_replicas_racing_on_a_fresh_database(
    stack: Stack,
    kube: Kubectl,
    namespace: Callable[[str], str],
    database: Callable[[str, str], str],
) -> None:
    """Alembic takes no lock: 3 replicas on a fresh database, a 3 s migration. Recorded,
    not prescribed: how many pods ran it, and what failed and was retried."""
    ns = namespace("race")
    url = database("inject_d", ns)
    count_runs(url)
    release = migrations("migrations-1", ns, revisions=2)
    app = deployment(
        "orders",
        ns,
        image=stack.images["tools"].ref,
        configmap=release,
        database_secret="db",
        migration_seconds=3,
    )
    seconds = roll_out(kube, ns, [release, app], "orders")

    lines, failed_runs = [], 0
    for pod in current_pods(kube, ns, "orders"):
        migrate = status_of(pod, MIGRATE)
        # An init container of a Deployment's pod restarts only after a failed run.
        restarts = migrate.get("restartCount", 0)
        failed_runs += restarts
        last = migrate.get("lastState", {}).get("terminated")
        why = f"last failure: exit {last['exitCode']} {last.get('reason', '')}" if last else ""
        lines.append(f"  {pod['metadata']['name']}: init container restarts {restarts} {why}")
        assert moment(migrate["state"]["terminated"]["finishedAt"]) <= moment(
            status_of(pod, "app")["state"]["running"]["startedAt"]
        )
    assert recorded(url) == ["0002"]
    runs = runs_started(url)
    assert runs >= 1
    summary.record_lines(
        "inject, 3 replicas racing (alembic, 3 s migration, PostgreSQL 15)",
        f"  rollout {seconds:.1f} s; runs of the migration started (database counter): "
        f"{runs}; failed init container runs: {failed_runs}",
        *lines,
    )
