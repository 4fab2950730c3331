"""Builders for complete AdmissionReviews and workloads, shared by every tier."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import yaml

from webhook import workloads
from webhook.workloads import Workload

FIXTURES = Path(__file__).parent / "fixtures"
CORPUS = FIXTURES / "corpus" / "deployments"
WORKLOADS = FIXTURES / "workloads"


def corpus() -> list[tuple[str, dict[str, Any]]]:
    """(file name, Deployment) for every real Deployment in the corpus."""
    found = []
    for path in sorted(CORPUS.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        deployments = [d for d in docs if d.get("kind") == "Deployment"]
        assert len(deployments) == 1, f"{path.name}: expected one Deployment"
        found.append((path.name, deployments[0]))
    return found


def workload_fixtures() -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every real workload under fixtures/workloads/."""
    found = []
    for path in sorted(WORKLOADS.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert len(docs) == 1, f"{path.name}: expected one document"
        found.append((path.name, docs[0]))
    return found


def workload(kind: str, api_version: str | None = None) -> Workload:
    """The row of webhook.workloads for `kind` (the first listed, or that apiVersion)."""
    for row in workloads.KINDS:
        if row.kind == kind and api_version in (None, row.api_version):
            return row
    raise AssertionError(f"no {api_version or ''} {kind} in webhook.workloads.KINDS")


def gvk(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(group, version, kind) of an object, as an AdmissionReview's request.kind has it."""
    group, _, version = obj["apiVersion"].rpartition("/")
    return group, version, obj["kind"]


def deployment(
    name: str = "api",
    namespace: str = "shop",
    *,
    mode: str | None = None,
    annotations: dict[str, str] | None = None,
    replicas: int = 1,
    containers: list[dict[str, Any]] | None = None,
    init_containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    labels = {"app": name}
    if mode is not None:
        labels["schemagate.dev/migrate"] = mode
    pod: dict[str, Any] = {
        "containers": containers
        or [
            {
                "name": "api",
                "image": "ghcr.io/example/api:1.0",
                "imagePullPolicy": "IfNotPresent",
                "env": [
                    {
                        "name": "DATABASE_URL",
                        "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}},
                    }
                ],
                "envFrom": [{"secretRef": {"name": "db-extra"}}],
                "volumeMounts": [{"name": "migrations", "mountPath": "/migrations"}],
                "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True},
                "resources": {"limits": {"memory": "256Mi"}},
                "workingDir": "/app",
                "ports": [{"containerPort": 8080}],
            }
        ]
    }
    if init_containers is not None:
        pod["initContainers"] = init_containers
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": dict(annotations or {}),
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
        },
    }


def shaped(doc: dict[str, Any], kind: str, api_version: str | None = None) -> dict[str, Any]:
    """A Deployment from `deployment()` rewritten as a valid object of another kind, with
    the same metadata and pod template (moved to where that kind keeps it)."""
    row = workload(kind, api_version)
    out = copy.deepcopy(doc)
    template = out["spec"]["template"]
    replicas, selector = out["spec"]["replicas"], out["spec"]["selector"]
    out["apiVersion"], out["kind"] = row.api_version, row.kind
    if kind in ("Job", "CronJob"):
        template["spec"]["restartPolicy"] = "Never"
        del template["metadata"]  # a Job selects its own pods
        job = {"template": template, "backoffLimit": 0}
        out["spec"] = (
            job if kind == "Job" else {"schedule": "0 3 * * *", "jobTemplate": {"spec": job}}
        )
    elif kind == "DaemonSet":
        out["spec"] = {"selector": selector, "template": template}
    else:
        out["spec"] = {"replicas": replicas, "selector": selector, "template": template}
        if kind == "StatefulSet":
            out["spec"]["serviceName"] = out["metadata"]["name"]
    assert row.template_of(out) is template
    return out


def labelled(obj: dict[str, Any], mode: str, annotations: dict[str, str]) -> dict[str, Any]:
    """A copy of `obj` opted in to `mode` with `annotations` added."""
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), "schemagate.dev/migrate": mode}
    meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    return out


def review(
    obj: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    namespace: str | None = None,
    uid: str | None = None,
    kind: tuple[str, str, str] = ("apps", "v1", "Deployment"),
    dry_run: bool = False,
) -> dict[str, Any]:
    meta = (obj or old or {}).get("metadata", {})
    group, version, kind_name = kind
    row = workloads.find(*kind)
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": group, "version": version, "kind": kind_name},
            "resource": {
                "group": group,
                "version": version,
                "resource": row.resource if row else kind_name.lower() + "s",
            },
            "operation": operation,
            "namespace": namespace or meta.get("namespace") or "default",
            "name": meta.get("name", ""),
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
            "object": obj,
            "oldObject": old,
            "dryRun": dry_run,
        },
    }
