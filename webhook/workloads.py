"""The kinds schemagate acts on, as data: where each keeps its pod template. Pure.

A kind is one row of `KINDS`, plus a rule in the MutatingWebhookConfiguration
(manifests/base/webhook/) so that the API server sends it here. A kind without a row
is allowed untouched, whatever the configuration sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

# What is a release: `template`, CREATE and every UPDATE that changes the pod template
# (or, in gate mode, the declared requirement); `create`, CREATE only, for kinds whose
# pod template is immutable once created (a Job's pods are made once). An UPDATE of
# such a kind passes untouched: the API server would refuse any change to its template,
# so neither an injection nor a removal could be stored.
Release = Literal["template", "create"]


@dataclass(frozen=True, slots=True)
class Workload:
    group: str
    version: str
    kind: str
    resource: str  # the plural the webhook configuration's rules name
    template: tuple[str, ...]  # keys from the object to its pod template
    release: Release = "template"
    # Keys to the number of pods started together, for the alembic warning;
    # None: one pod per node (DaemonSet).
    scale: tuple[str, ...] | None = ("spec", "replicas")
    # (keys, value): pods start one at a time unless the field there has that value
    # (a StatefulSet's OrderedReady policy starts pod n+1 once pod n is ready).
    parallel_when: tuple[tuple[str, ...], str] | None = None
    # Keys to a reference to another object that holds the pod template instead
    # (Argo Rollouts' workloadRef).
    template_ref: tuple[str, ...] | None = None
    # (apiVersion, kind) of the controllers that make this kind from their own pod
    # template (a Deployment its ReplicaSets, a CronJob its Jobs).
    made_by: tuple[tuple[str, str], ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def pod_pointer(self) -> str:
        """JSON Pointer to the pod spec, e.g. /spec/template/spec."""
        return "/" + "/".join((*self.template, "spec"))

    def template_of(self, obj: Mapping[str, Any]) -> Any:
        """The pod template (None when absent): what changes on a release."""
        return _at(obj, self.template)

    def pod_spec(self, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        pod = _at(obj, (*self.template, "spec"))
        return pod if isinstance(pod, dict) else {}

    def pods_at_once(self, obj: Mapping[str, Any]) -> int | None:
        """How many pods may run the init container together; None: one per node."""
        if self.scale is None:
            return None
        if self.parallel_when is not None:
            keys, value = self.parallel_when
            if _at(obj, keys) != value:
                return 1
        count = _at(obj, self.scale)
        return count if isinstance(count, int) and not isinstance(count, bool) else 1

    def made_by_controller(self, obj: Mapping[str, Any]) -> bool:
        """Whether one of `made_by` controls `obj`: it copies a template schemagate already
        answered on that owner, and a second answer could only disagree with the first (a
        patched ReplicaSet no longer matches its Deployment, which then makes another)."""
        meta = obj.get("metadata")
        owners = meta.get("ownerReferences") if isinstance(meta, dict) else None
        if not self.made_by or not isinstance(owners, list):
            return False
        return any(
            isinstance(owner, dict)
            and owner.get("controller") is True
            and (owner.get("apiVersion"), owner.get("kind")) in self.made_by
            for owner in owners
        )

    def referenced(self, obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The object named by `template_ref`, when this one takes its template from it."""
        if self.template_ref is None:
            return None
        ref = _at(obj, self.template_ref)
        return ref if isinstance(ref, dict) else None


_APPS = ("apps", "v1")
_JOB_TEMPLATE = ("spec", "jobTemplate", "spec", "template")
_CRONJOB_SCALE = ("spec", "jobTemplate", "spec", "parallelism")

KINDS: tuple[Workload, ...] = (
    Workload(*_APPS, "Deployment", "deployments", ("spec", "template")),
    Workload(
        *_APPS,
        "StatefulSet",
        "statefulsets",
        ("spec", "template"),
        parallel_when=(("spec", "podManagementPolicy"), "Parallel"),
    ),
    Workload(*_APPS, "DaemonSet", "daemonsets", ("spec", "template"), scale=None),
    Workload(
        *_APPS,
        "ReplicaSet",
        "replicasets",
        ("spec", "template"),
        made_by=(("apps/v1", "Deployment"), ("argoproj.io/v1alpha1", "Rollout")),
    ),
    Workload(
        "batch",
        "v1",
        "Job",
        "jobs",
        ("spec", "template"),
        release="create",
        scale=("spec", "parallelism"),
        made_by=(("batch/v1", "CronJob"), ("batch/v1beta1", "CronJob")),
    ),
    Workload("batch", "v1", "CronJob", "cronjobs", _JOB_TEMPLATE, scale=_CRONJOB_SCALE),
    # Kubernetes < 1.21 serves CronJob as batch/v1beta1 only; the object is the same.
    Workload("batch", "v1beta1", "CronJob", "cronjobs", _JOB_TEMPLATE, scale=_CRONJOB_SCALE),
    Workload(
        "argoproj.io",
        "v1alpha1",
        "Rollout",
        "rollouts",
        ("spec", "template"),
        template_ref=("spec", "workloadRef"),
    ),
)

_BY_GVK: Mapping[tuple[str, str, str], Workload] = {(w.group, w.version, w.kind): w for w in KINDS}


def find(group: str, version: str, kind: str) -> Workload | None:
    """The row for a request's kind, or None: schemagate lets that kind pass."""
    return _BY_GVK.get((group, version, kind))


def _at(obj: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = obj
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
