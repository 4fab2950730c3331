"""The `run: once` controller's decisions over data: no cluster, every rule."""

from __future__ import annotations

import copy
import datetime
import hashlib
from typing import Any

import jsonpatch

from tests.factories import deployment
from webhook import once, reconcile
from webhook.config import Config
from webhook.contract import RELEASE, RETRY, InjectSpec
from webhook.reconcile import Create, Delete, Event, decide

CONFIG = Config(wait_image="ghcr.io/schemagate/schemagate:0.1.0")
ONCE = {"schemagate.dev/tool": "alembic", "schemagate.dev/run": "once"}
NOW = datetime.datetime(2026, 12, 1, 22, 0, tzinfo=datetime.UTC)


def stored(image: str = "ghcr.io/example/api:1.0", **annotations: str) -> dict[str, Any]:
    """A workload as the API server stores it: admitted by the webhook, with a uid."""
    obj = deployment(mode="inject", annotations={**ONCE, **annotations}, replicas=3)
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = image
    obj["spec"]["template"]["spec"]["volumes"] = [
        {"name": "migrations", "configMap": {"name": "m", "defaultMode": 420}}
    ]
    obj["metadata"]["uid"] = "0000-uid"
    plan = once.plan_once(once.DEPLOYMENT, obj, spec(), CONFIG)
    result: dict[str, Any] = jsonpatch.apply_patch(obj, plan.ops)
    return result


def spec() -> InjectSpec:
    return InjectSpec("alembic", None, None, None, "once")


def release(workload: dict[str, Any]) -> once.Release:
    found = reconcile.wanted(workload, CONFIG)
    assert found is not None
    return found


def job(workload: dict[str, Any], state: str | None = None, retry: str = "") -> dict[str, Any]:
    body = reconcile.job_body(workload, release(workload), retry)
    if state is not None:
        kind = {"succeeded": "Complete", "failed": "Failed"}[state]
        condition = {"type": kind, "status": "True", "lastTransitionTime": "2026-12-01T21:59:30Z"}
        if state == "failed":
            condition["message"] = "Job has reached the specified backoff limit"
        body["status"] = {"conditions": [condition]}
        if state == "succeeded":
            body["status"]["completionTime"] = "2026-12-01T21:59:31Z"
    return body


def marker_of(actions: list[reconcile.Action]) -> dict[str, Any]:
    (create,) = [a for a in actions if isinstance(a, Create) and a.kind == "ConfigMap"]
    return dict(create.body)


def test_a_new_release_starts_one_job_built_from_the_template() -> None:
    workload = stored()
    wanted = release(workload)
    actions = decide(workload, [], None, CONFIG, NOW)
    assert actions == [
        Create("Job", reconcile.job_body(workload, wanted, "")),
        Event("Normal", "MigrationStarted", f"started Job {wanted.job}", wanted.short),
    ]
    body = reconcile.job_body(workload, wanted, "")
    assert body["metadata"]["name"] == wanted.job
    assert body["metadata"]["namespace"] == "shop"
    assert body["metadata"]["labels"][reconcile.WORKLOAD] == "api"
    assert body["metadata"]["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "uid": "0000-uid"}
    ]
    assert body["spec"]["backoffLimit"] == 0
    pod = body["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    app = workload["spec"]["template"]["spec"]["containers"][0]
    for key in ("image", "env", "envFrom", "volumeMounts", "securityContext"):
        assert container[key] == app[key]
    assert container["command"] == ["alembic", "upgrade", "head"]
    assert pod["volumes"] == workload["spec"]["template"]["spec"]["volumes"][:1]


def test_a_running_job_is_waited_for() -> None:
    workload = stored()
    assert decide(workload, [job(workload)], None, CONFIG, NOW) == []


def test_the_end_of_the_run_is_written_to_the_marker() -> None:
    workload = stored()
    wanted = release(workload)
    done = decide(workload, [job(workload, "succeeded")], None, CONFIG, NOW)
    assert done[1] == Event(
        "Normal", "MigrationSucceeded", f"Job {wanted.job} succeeded", wanted.short
    )
    body = marker_of(done)
    assert body["metadata"]["name"] == wanted.marker
    assert body["data"] == {
        "state": "succeeded",
        "job": wanted.job,
        "release": wanted.digest,
        "finished": "2026-12-01T21:59:31Z",
        "retry": "",
    }
    failed = decide(workload, [job(workload, "failed")], None, CONFIG, NOW)
    assert marker_of(failed)["data"]["state"] == "failed"
    assert marker_of(failed)["data"]["reason"] == "Job has reached the specified backoff limit"
    assert failed[1] == Event(
        "Warning",
        "MigrationFailed",
        f"Job {wanted.job} failed: Job has reached the specified backoff limit; see kubectl "
        f"logs job/{wanted.job}; retry with a new value of annotation {RETRY}",
        wanted.short,
    )


def test_a_recorded_release_is_never_run_again() -> None:
    workload = stored()
    finished = marker_of(decide(workload, [job(workload, "succeeded")], None, CONFIG, NOW))
    assert decide(workload, [job(workload, "succeeded")], finished, CONFIG, NOW) == []
    assert decide(workload, [], finished, CONFIG, NOW) == []  # its Job since replaced
    scaled = copy.deepcopy(workload)
    scaled["spec"]["replicas"] = 5
    scaled["metadata"]["labels"]["team"] = "orders"
    assert decide(scaled, [], finished, CONFIG, NOW) == []


def test_a_failed_run_is_retried_only_by_a_new_retry_value() -> None:
    workload = stored()
    wanted = release(workload)
    failed = marker_of(decide(workload, [job(workload, "failed")], None, CONFIG, NOW))
    assert decide(workload, [job(workload, "failed")], failed, CONFIG, NOW) == []
    retried = stored(**{RETRY: "1"})
    # Events of a retried run are their own (a second retry is not swallowed as a repeat).
    retried_key = f"{wanted.short}-{hashlib.sha256(b'1').hexdigest()[:8]}"
    assert decide(retried, [job(workload, "failed")], failed, CONFIG, NOW) == [
        Delete("Job", wanted.job),
        Delete("ConfigMap", wanted.marker),
        Event("Normal", "MigrationRetry", f"retrying Job {wanted.job}", retried_key),
    ]
    # The marker is gone but the old Job still listed: it goes, it is not recorded again.
    assert decide(retried, [job(workload, "failed")], None, CONFIG, NOW) == [
        Delete("Job", wanted.job)
    ]
    (create, started) = decide(retried, [], None, CONFIG, NOW)
    assert started == Event("Normal", "MigrationStarted", f"started Job {wanted.job}", retried_key)
    assert isinstance(create, Create)
    assert create.body["metadata"]["annotations"][RETRY] == "1"
    # That run's failure is recorded with its retry value: no loop of retries.
    again = marker_of(decide(retried, [job(retried, "failed", "1")], None, CONFIG, NOW))
    assert again["data"]["retry"] == "1"
    assert decide(retried, [], again, CONFIG, NOW) == []


def test_releases_never_run_concurrently() -> None:
    first = stored()
    second = stored(image="ghcr.io/example/api:1.1")
    old, new = release(first), release(second)
    assert old.digest != new.digest
    assert decide(second, [job(first)], None, CONFIG, NOW) == [
        Event(
            "Normal",
            "MigrationQueued",
            f"release {new.short} waits for Job {old.job} to end",
            new.short,
        )
    ]
    # Once the older run has ended its Job is replaced by the newer one.
    actions = decide(second, [job(first, "succeeded")], None, CONFIG, NOW)
    assert actions[0] == Delete("Job", old.job)
    assert isinstance(actions[1], Create) and actions[1].body["metadata"]["name"] == new.job


def test_workloads_that_are_not_run_once_are_left_alone() -> None:
    workload = stored()
    every = copy.deepcopy(workload)
    every["metadata"]["annotations"]["schemagate.dev/run"] = "every-pod"
    gated = copy.deepcopy(workload)
    gated["metadata"]["labels"]["schemagate.dev/migrate"] = "gate"
    # A template the webhook did not admit as this release (edited past it, or admitted
    # with another configuration): nothing is run for a release no pod waits for.
    unplaced = copy.deepcopy(workload)
    unplaced["spec"]["template"]["metadata"]["annotations"][RELEASE] = "0" * 64
    broken = copy.deepcopy(workload)
    broken["spec"]["template"]["spec"]["containers"] = []
    for obj in (every, gated, unplaced, broken):
        assert reconcile.wanted(obj, CONFIG) is None
        assert decide(obj, [], None, CONFIG, NOW) == []


def test_events_are_named_once_per_release_and_reason() -> None:
    workload = stored()
    wanted = release(workload)
    event = Event("Normal", "MigrationStarted", "started", wanted.short)
    body = reconcile.event_body(workload, event, NOW)
    assert body["metadata"] == {
        "name": f"api.{wanted.short}.migrationstarted",
        "namespace": "shop",
    }
    assert body["involvedObject"]["uid"] == "0000-uid"
    assert (body["type"], body["reason"], body["message"]) == (
        "Normal",
        "MigrationStarted",
        "started",
    )
