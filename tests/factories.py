"""Builders for complete AdmissionReviews and Deployments, shared by every tier."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).parent / "fixtures" / "corpus" / "deployments"


def corpus() -> list[tuple[str, dict[str, Any]]]:
    """(file name, Deployment) for every real Deployment in the corpus."""
    found = []
    for path in sorted(CORPUS.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        deployments = [d for d in docs if d.get("kind") == "Deployment"]
        assert len(deployments) == 1, f"{path.name}: expected one Deployment"
        found.append((path.name, deployments[0]))
    return found


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
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": group, "version": version, "kind": kind_name},
            "resource": {"group": group, "version": version, "resource": "deployments"},
            "operation": operation,
            "namespace": namespace or meta.get("namespace") or "default",
            "name": meta.get("name", ""),
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
            "object": obj,
            "oldObject": old,
            "dryRun": dry_run,
        },
    }
