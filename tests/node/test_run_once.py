"""`schemagate.dev/run: once` with pods that run, beside `every-pod` on the same scenario.

Four fresh databases (PostgreSQL and MariaDB, each for `once` and for `every-pod`), one
3-replica Deployment on each, a 20 s Alembic migration that bumps a counter a rollback
cannot undo, all four rolled out at the same time. Every claim is read from what the
cluster and the databases recorded: the Job and its status, the kubelet's container
states and timestamps, the counter, Events and logs through kubectl.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.harness import Kubectl, namespace_object, wait_for
from tests.node.stack import NAMESPACE, Stack
from tests.node.workloads import (
    MIGRATE,
    NAMESPACE_IDS,
    count_runs,
    count_runs_mariadb,
    deployment,
    dump,
    first_line,
    logs,
    maybe_status,
    migrations,
    moment,
    pods,
    previous_logs,
    runs_started,
    runs_started_mariadb,
    secret,
    status_of,
)
from tests.support import summary

WAIT = "schemagate-wait"
SECONDS = 20
WORKLOAD = "schemagate.dev/workload"
RELEASE = "schemagate.dev/release"


@dataclass
class Scenario:
    database: str  # PostgreSQL | MariaDB
    run: str  # once | every-pod
    namespace: str
    counter: Callable[[], int]
    objects: list[dict[str, Any]] = field(default_factory=list)
    rollout_seconds: float = 0.0

    @property
    def title(self) -> str:
        return f"{self.database} {self.run}"


def manifests(stack: Stack, namespace: str, run: str, revisions: int) -> list[dict[str, Any]]:
    release = migrations(f"migrations-{revisions}", namespace, revisions=revisions)
    app = deployment(
        "orders",
        namespace,
        image=stack.images["tools"].ref,
        configmap=release,
        database_secret="db",
        migration_seconds=SECONDS,
        annotations={"schemagate.dev/tool": "alembic", "schemagate.dev/run": run},
    )
    return [release, app]


def prepare(stack: Stack, kube: Kubectl, database: str, run: str) -> Scenario:
    short = "pg" if database == "PostgreSQL" else "maria"
    ns = f"{run}-{short}-{next(NAMESPACE_IDS)}"
    kube.apply_objects([namespace_object(ns)])
    name = ns.replace("-", "_")
    if database == "PostgreSQL":
        assert stack.postgres is not None
        stack.postgres.create_database(name)
        url = stack.postgres.url(name)
        count_runs(url)

        def counter() -> int:
            return runs_started(url)

    else:
        maria = stack.mariadb
        assert maria is not None
        maria.create_database(name)
        url = maria.url(name).replace("mysql://", "mysql+pymysql://")
        count_runs_mariadb(maria, name)

        def counter() -> int:
            return runs_started_mariadb(maria, name)

    kube.apply_objects([secret("db", ns, url)])
    return Scenario(database, run, ns, counter, manifests(stack, ns, run, revisions=2))


def rollout(kube: Kubectl, scenario: Scenario, started: float) -> float:
    kube(
        "rollout", "status", "-n", scenario.namespace, "deployment/orders", "--timeout=240s",
        check=True,
    )  # fmt: skip
    return time.monotonic() - started


def current(kube: Kubectl, namespace: str) -> list[dict[str, Any]]:
    return [
        p for p in pods(kube, namespace, "orders") if not p["metadata"].get("deletionTimestamp")
    ]


def jobs(kube: Kubectl, namespace: str) -> list[dict[str, Any]]:
    listed = kube.json("get", "jobs", "-n", namespace, "-l", f"{WORKLOAD}=orders")
    return list(listed["items"])


def release_of(kube: Kubectl, namespace: str) -> str:
    workload = kube.json("get", "deployment", "orders", "-n", namespace)
    return str(workload["spec"]["template"]["metadata"]["annotations"][RELEASE])


def controller_restarted_mid_run(kube: Kubectl, scenario: Scenario) -> None:
    """Delete the controller's pod while the Job runs: the next one must finish the job."""
    wait_for("the release's Job", lambda: bool(jobs(kube, scenario.namespace)), timeout=60)
    selector = "app.kubernetes.io/name=schemagate-controller"
    kube("delete", "pod", "-n", NAMESPACE, "-l", selector, "--wait=false", check=True)


@pytest.fixture(scope="module")
def scenarios(stack: Stack, kube: Kubectl) -> dict[str, Scenario]:
    found = {
        s.title: s
        for s in (
            prepare(stack, kube, db, run)
            for db in ("PostgreSQL", "MariaDB")
            for run in ("once", "every-pod")
        )
    }
    with concurrent.futures.ThreadPoolExecutor(len(found)) as pool:
        waits = {}
        for scenario in found.values():
            started = time.monotonic()
            kube("apply", "-f", "-", stdin=dump(scenario.objects), check=True)
            waits[scenario.title] = pool.submit(rollout, kube, scenario, started)
        controller_restarted_mid_run(kube, found["PostgreSQL once"])
        for title, done in waits.items():
            found[title].rollout_seconds = done.result()
    return found


def init_failures(kube: Kubectl, namespace: str, container: str) -> int:
    """Failed runs of the init container: a Deployment's pod restarts one only on failure."""
    total = 0
    for pod in current(kube, namespace):
        status = status_of(pod, container)
        total += status.get("restartCount", 0)
        assert status["state"]["terminated"]["exitCode"] == 0
    return total


@pytest.mark.parametrize("database", ["PostgreSQL", "MariaDB"])
def test_once_runs_the_migration_once_before_any_app_container(
    kube: Kubectl, scenarios: dict[str, Scenario], database: str
) -> None:
    scenario = scenarios[f"{database} once"]
    ns = scenario.namespace
    assert scenario.counter() == 1
    (job,) = jobs(kube, ns)
    assert job["metadata"]["name"] == f"orders-migrate-{release_of(kube, ns)[:12]}"
    assert job["status"]["succeeded"] == 1
    finished = moment(job["status"]["completionTime"])
    ran = kube("logs", "-n", ns, f"job/{job['metadata']['name']}", check=True).stdout
    assert "Running upgrade 0001 -> 0002" in ran
    running = current(kube, ns)
    assert len(running) == 3
    assert init_failures(kube, ns, WAIT) == 0
    for pod in running:
        name = pod["metadata"]["name"]
        assert [c["name"] for c in pod["spec"]["initContainers"]] == [WAIT]
        app = status_of(pod, "app")
        assert app.get("restartCount", 0) == 0
        assert moment(app["state"]["running"]["startedAt"]) >= finished, name
        assert first_line(kube, ns, name, "app") == "app found schema 0002"
        assert "succeeded" in logs(kube, ns, name, WAIT)
    events = kube.json("get", "events", "-n", ns, "--field-selector", "involvedObject.name=orders")
    reasons = {e["reason"] for e in events["items"] if e["involvedObject"]["kind"] == "Deployment"}
    assert {"MigrationStarted", "MigrationSucceeded"} <= reasons


def test_every_pod_beside_once(kube: Kubectl, scenarios: dict[str, Scenario]) -> None:
    """Recorded, not prescribed for every-pod: how many runs started and failed."""
    lines = [f"  {'':<22}{'runs started':>14}{'failed init runs':>18}{'rollout':>10}"]
    for title in ("PostgreSQL every-pod", "PostgreSQL once", "MariaDB every-pod", "MariaDB once"):
        scenario = scenarios[title]
        container = MIGRATE if scenario.run == "every-pod" else WAIT
        failures = init_failures(kube, scenario.namespace, container)
        runs = scenario.counter()
        assert runs >= 1
        if scenario.run == "once":
            assert (runs, failures) == (1, 0)
        lines.append(f"  {title:<22}{runs:>14}{failures:>18}{scenario.rollout_seconds:>8.1f} s")
    summary.record_lines(
        f"run once vs every pod: 3 replicas, {SECONDS} s alembic migration, fresh databases, "
        "rolled out together (the PostgreSQL once controller restarted mid-run)",
        *lines,
    )


def test_resync_scale_and_a_lost_pod_never_run_it_again(
    kube: Kubectl, scenarios: dict[str, Scenario]
) -> None:
    once = [scenarios["PostgreSQL once"], scenarios["MariaDB once"]]
    before = {s.title: jobs(kube, s.namespace)[0]["metadata"]["uid"] for s in once}
    for scenario in once:
        ns = scenario.namespace
        generation = kube.json("get", "deployment", "orders", "-n", ns)["metadata"]["generation"]
        kube("apply", "-f", "-", stdin=dump(scenario.objects), check=True)
        again = kube.json("get", "deployment", "orders", "-n", ns)["metadata"]["generation"]
        assert again == generation, "a re-sync changed the Deployment"
        kube("scale", "-n", ns, "deployment/orders", "--replicas=5", check=True)
    for scenario in once:
        rollout(kube, scenario, time.monotonic())
        victim = current(kube, scenario.namespace)[0]["metadata"]["name"]
        kube("delete", "pod", "-n", scenario.namespace, victim, "--wait=false", check=True)
    for scenario in once:
        ns = scenario.namespace

        def five_ready(ns: str = ns) -> bool:
            found = current(kube, ns)
            return len(found) == 5 and all(
                (maybe_status(p, "app") or {}).get("ready") for p in found
            )

        wait_for("5 ready pods again", five_ready, timeout=90)
        assert scenario.counter() == 1
        assert [j["metadata"]["uid"] for j in jobs(kube, ns)] == [before[scenario.title]]
        assert init_failures(kube, ns, WAIT) == 0


def test_a_failed_release_starts_no_app_container_and_says_why(
    stack: Stack, kube: Kubectl, scenarios: dict[str, Scenario]
) -> None:
    scenario = scenarios["PostgreSQL once"]
    ns = scenario.namespace
    old = {p["metadata"]["name"] for p in current(kube, ns)}
    replicas = len(old)
    broken = manifests(stack, ns, "once", revisions=3)
    broken[1]["spec"]["replicas"] = replicas
    kube("apply", "-f", "-", stdin=dump(broken), check=True)
    release = release_of(kube, ns)
    job_name = f"orders-migrate-{release[:12]}"

    def new_pods() -> list[dict[str, Any]]:
        return [p for p in current(kube, ns) if p["metadata"]["name"] not in old]

    def wait_failed() -> bool:
        found = new_pods()
        status = maybe_status(found[0], WAIT) if found else None
        ended = (status or {}).get("lastState", {}).get("terminated") or (status or {}).get(
            "state", {}
        ).get("terminated")
        return ended is not None and ended["exitCode"] == 1

    wait_for("the new release's pod to fail in its wait container", wait_failed, timeout=150)
    # One Job, the new release's: the previous one was replaced when it started.
    (job,) = jobs(kube, ns)
    assert job["metadata"]["name"] == job_name
    assert job["status"].get("failed") == 1 and not job["status"].get("succeeded")
    (new,) = new_pods()  # maxSurge 1, maxUnavailable 0: one new pod, stuck
    app = status_of(new, "app")
    assert "running" not in app["state"] and "terminated" not in app["state"]
    assert not app.get("lastState"), "the app container of the failed release started"
    # The old release keeps serving.
    for pod in current(kube, ns):
        if pod["metadata"]["name"] in old:
            assert status_of(pod, "app")["ready"] is True
    assert {p["metadata"]["name"] for p in current(kube, ns)} == old | {new["metadata"]["name"]}
    # Readable with kubectl: the Job's log, the Event on the Deployment, the pod's log.
    error = 'column "created_at" does not exist'
    assert error in kube("logs", "-n", ns, f"job/{job_name}", check=True).stdout
    events = kube.json("get", "events", "-n", ns, "--field-selector", "involvedObject.name=orders")
    (failed,) = [e for e in events["items"] if e["reason"] == "MigrationFailed"]
    assert failed["type"] == "Warning"
    assert f"Job {job_name} failed" in failed["message"]
    name = new["metadata"]["name"]
    said = kube("logs", "-n", ns, name, "-c", WAIT).stdout + (
        previous_logs(kube, ns, name, WAIT) or ""
    )
    assert f"migration Job {job_name} failed" in said
    assert scenario.counter() == 1  # r0001 was not run again
