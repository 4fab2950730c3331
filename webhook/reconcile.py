"""The `run: once` controller's decisions: a workload, its Jobs and its release's marker
in, the actions to take out. Pure; webhook/controller.py does the watching and the calls.

State lives in the cluster only (the Jobs and the marker ConfigMaps), so a controller
restarted mid-run picks up where it was: a running Job is waited for, a finished one
gets its marker, and a create that already happened answers AlreadyExists.

Rules:
- One run per release: the Job `<workload>-migrate-<hash12>`, created once; its pods
  never restart (restartPolicy Never, backoffLimit 0).
- A failed run is retried only by a new release or by a new value of the workload's
  annotation `schemagate.dev/retry`, which deletes the failed Job and marker.
- Runs of one workload never overlap: while a Job of another release is still running,
  the new release waits for it to end. The previous release's Job is deleted only when
  the next one is created, so its logs stay readable until then.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from certs.times import utc_text
from webhook import contract, once
from webhook.config import Config
from webhook.contract import Invalid

WORKLOAD = contract.PREFIX + "workload"  # label on Jobs and markers: the workload's name
RETRY = contract.RETRY  # annotation on Jobs: the retry value the run was started with
MANAGED_BY = {"app.kubernetes.io/managed-by": "schemagate"}


@dataclass(frozen=True, slots=True)
class Create:
    kind: Literal["Job", "ConfigMap"]
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Delete:
    kind: Literal["Job", "ConfigMap"]
    name: str


@dataclass(frozen=True, slots=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    key: str  # one Event per release, retry and reason (see `event_body`)


Action: TypeAlias = Create | Delete | Event


def wanted(workload: Mapping[str, Any], config: Config) -> once.Release | None:
    """The release a workload in `run: once` needs, or None when it is not in that mode
    or its stored template is not one the webhook placed (nothing to run for it)."""
    if contract.labels_of(workload).get(contract.LABEL) != "inject":
        return None
    try:
        spec = contract.parse_annotations(contract.annotations_of(workload)).inject_spec()
        if spec.run != "once":
            return None
        release = once.release_of(workload, spec, config)
    except Invalid:
        return None
    placed = contract.annotations_of(workload.get("spec", {}).get("template")).get(contract.RELEASE)
    return release if placed == release.digest else None


def decide(
    workload: Mapping[str, Any],
    jobs: Sequence[Mapping[str, Any]],
    marker: Mapping[str, Any] | None,
    config: Config,
    now: datetime.datetime,
) -> list[Action]:
    """`jobs`: the Jobs labelled with the workload; `marker`: the wanted release's."""
    release = wanted(workload, config)
    if release is None:
        return []
    retry = contract.annotations_of(workload).get(RETRY, "")
    if marker is not None:
        data = marker.get("data") or {}
        if data.get("state") == "failed" and data.get("retry", "") != retry:
            return [
                Delete("Job", release.job),
                Delete("ConfigMap", release.marker),
                Event(
                    "Normal", "MigrationRetry", f"retrying Job {release.job}", _key(release, retry)
                ),
            ]
        return []
    own = next((j for j in jobs if _name(j) == release.job), None)
    if own is not None:
        state = job_state(own)
        if state == "running":
            return []
        if state == "failed" and contract.annotations_of(own).get(RETRY, "") != retry:
            return [Delete("Job", release.job)]  # its marker is already gone: a retry
        reason = _failure(own) if state == "failed" else ""
        return [
            Create("ConfigMap", marker_body(workload, release, own, state, reason, now)),
            _ended(release, state, reason, _key(release, retry)),
        ]
    running = [j for j in jobs if job_state(j) == "running"]
    if running:
        return [
            Event(
                "Normal",
                "MigrationQueued",
                f"release {release.short} waits for Job {_name(running[0])} to end",
                _key(release, retry),
            )
        ]
    return [
        *(Delete("Job", _name(j)) for j in jobs),
        Create("Job", job_body(workload, release, retry)),
        Event("Normal", "MigrationStarted", f"started Job {release.job}", _key(release, retry)),
    ]


def job_state(job: Mapping[str, Any]) -> Literal["running", "succeeded", "failed"]:
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") == "Complete":
            return "succeeded"
        if condition.get("status") == "True" and condition.get("type") == "Failed":
            return "failed"
    return "running"


def job_body(workload: Mapping[str, Any], release: once.Release, retry: str) -> dict[str, Any]:
    labels = {**MANAGED_BY, WORKLOAD: release.workload, contract.RELEASE: release.short}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": release.job,
            "namespace": _namespace(workload),
            "labels": labels,
            "annotations": {contract.RELEASE: release.digest, RETRY: retry},
            "ownerReferences": [_owner(workload)],
        },
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": labels}, "spec": dict(release.pod)},
        },
    }


def marker_body(
    workload: Mapping[str, Any],
    release: once.Release,
    job: Mapping[str, Any],
    state: str,
    reason: str,
    now: datetime.datetime,
) -> dict[str, Any]:
    status = job.get("status", {})
    ended = [c.get("lastTransitionTime") for c in status.get("conditions") or []]
    finished = status.get("completionTime") or next((t for t in ended if t), None) or utc_text(now)
    data = {"state": state, "job": release.job, "release": release.digest, "finished": finished}
    if reason:
        data["reason"] = reason
    data["retry"] = str(contract.annotations_of(job).get(RETRY, ""))
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": release.marker,
            "namespace": _namespace(workload),
            "labels": {**MANAGED_BY, WORKLOAD: release.workload, contract.RELEASE: release.short},
            "ownerReferences": [_owner(workload)],
        },
        "data": data,
    }


def event_body(workload: Mapping[str, Any], event: Event, now: datetime.datetime) -> dict[str, Any]:
    """A core/v1 Event on the workload. Its name is fixed per release, retry value and
    reason, so a decision repeated (a restart, a re-sync) answers AlreadyExists instead
    of piling up Events."""
    meta = workload["metadata"]
    stamp = utc_text(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{event.key}.{event.reason.lower()}",
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "source": {"component": "schemagate-controller"},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def _key(release: once.Release, retry: str) -> str:
    if not retry:
        return release.short
    return f"{release.short}-{hashlib.sha256(retry.encode()).hexdigest()[:8]}"


def _ended(release: once.Release, state: str, reason: str, key: str) -> Event:
    if state == "succeeded":
        return Event("Normal", "MigrationSucceeded", f"Job {release.job} succeeded", key)
    return Event(
        "Warning",
        "MigrationFailed",
        f"Job {release.job} failed: {reason}; see kubectl logs job/{release.job}; "
        f"retry with a new value of annotation {RETRY}",
        key,
    )


def _failure(job: Mapping[str, Any]) -> str:
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return str(condition.get("message") or condition.get("reason") or "failed")
    return "failed"


def _name(obj: Mapping[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def _namespace(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["namespace"])


def _owner(workload: Mapping[str, Any]) -> dict[str, Any]:
    # No blockOwnerDeletion: that would need the right to delete the Deployment.
    meta = workload["metadata"]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"], "uid": meta["uid"]}
