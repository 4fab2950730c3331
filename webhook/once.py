"""`schemagate.dev/run: once`: what a release is, and what admission places for it. Pure.

A release is the migration run that inject mode would do, as data: the container
`inject.build_container` builds, the template's volumes it mounts, and the pod-level
fields a Job of it needs. Its digest names the Job (`<workload>-migrate-<hash12>`) and
the marker ConfigMap the controller writes when the Job has ended
(`<workload>-migrated-<hash12>`). Labels, annotations, replicas and schemagate's own
items are not part of it, so a re-sync, a scale or a label edit is the same release.

Admission only places a wait init container and a non-optional ConfigMap volume of
the marker: the kubelet starts no container of a pod whose ConfigMap volume does not
exist, so no app container runs before the release's run has ended.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from webhook import inject, workloads
from webhook.config import Config
from webhook.contract import RUN, InjectSpec, Invalid
from webhook.workloads import Workload

MOUNT = "/run/schemagate/release"
# Fields of the pod template a Job of the migration container needs besides its volumes.
POD_FIELDS = ("serviceAccountName", "securityContext", "imagePullSecrets")
# Job names become the `job-name` label of their pods: at most 63 characters.
MAX_NAME = 63
# The controller runs releases of Deployments; other kinds keep one run per pod.
DEPLOYMENT = workloads.KINDS[0]


@dataclass(frozen=True, slots=True)
class Release:
    workload: str
    digest: str  # sha256 hex of the canonical JSON of `pod` and the workload's name
    pod: Mapping[str, Any]  # the Job's pod spec

    @property
    def short(self) -> str:
        return self.digest[:12]

    @property
    def job(self) -> str:
        return _name(self.workload, "migrate", self.short)

    @property
    def marker(self) -> str:
        return _name(self.workload, "migrated", self.short)


def release_of(obj: Mapping[str, Any], spec: InjectSpec, config: Config) -> Release:
    """The release of a Deployment in inject mode, or `Invalid`."""
    meta = obj.get("metadata")
    workload = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(workload, str) or not workload:
        raise Invalid("run once needs metadata.name (generateName is not supported)")
    if len(workload) > MAX_NAME:
        # It labels the Job and the marker, and label values have at most 63 characters.
        raise Invalid(f"run once needs a name of at most {MAX_NAME} characters")
    container = inject.build_container(DEPLOYMENT, obj, spec, config)
    template = DEPLOYMENT.pod_spec(obj)
    mounts = container.get("volumeMounts")
    mounted = {m.get("name") for m in mounts if isinstance(m, dict)} if mounts else set()
    volumes = template.get("volumes")
    needed = (
        [v for v in volumes if isinstance(v, dict) and v.get("name") in mounted]
        if (isinstance(volumes, list))
        else []
    )
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if needed:
        pod["volumes"] = needed
    for key in POD_FIELDS:
        if template.get(key):
            pod[key] = template[key]
    document = {"kind": "Deployment", "name": workload, "pod": pod}
    digest = hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return Release(workload, digest, pod)


def wait_container(image: str) -> dict[str, Any]:
    """Reads the mounted marker: exits 0 when the run succeeded, 1 with the reason if not.
    It needs no database credentials and no API access (no token is used)."""
    return {
        "name": inject.WAIT,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["wait", "--marker", MOUNT],
        "volumeMounts": [{"name": inject.VOLUME, "mountPath": MOUNT, "readOnly": True}],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def marker_volume(release: Release) -> dict[str, Any]:
    # defaultMode written out as the API server defaults it, so the stored volume
    # matches and a re-sync patches nothing.
    return {"name": inject.VOLUME, "configMap": {"name": release.marker, "defaultMode": 420}}


def plan_once(
    workload: Workload, obj: Mapping[str, Any], spec: InjectSpec, config: Config
) -> inject.Injection:
    if workload != DEPLOYMENT:
        raise Invalid(
            f"annotation {RUN}: once is for Deployments; a {workload.kind} migrates in each "
            "of its pods (every-pod), or gates on a migration Job (schemagate.dev/migrate: gate)"
        )
    if not config.wait_image:
        raise Invalid(
            "run once needs the webhook started with --wait-image (SCHEMAGATE_WAIT_IMAGE)"
        )
    release = release_of(obj, spec, config)
    want = inject.Placement(
        wait=wait_container(config.wait_image),
        volume=marker_volume(release),
        release=release.digest,
    )
    ops = inject.plan_placement(DEPLOYMENT, obj, want)
    note = (
        f"schemagate: run once: pods of release {release.short} wait in init container "
        f"{inject.WAIT} for Job {release.job} (marker ConfigMap {release.marker})"
    )
    return inject.Injection(ops, (note,) if ops else ())


def _name(workload: str, what: str, short: str) -> str:
    tail = f"-{what}-{short}"
    return workload[: MAX_NAME - len(tail)].rstrip("-.") + tail
