"""Inject mode: build the migration init container and the JSON Patch that places it. Pure.

The init container borrows the app container's image, environment, mounts and
security settings (the seed pattern: migrations ship inside the app image and reach
the database with the app's own credentials). Secrets stay references: `env` and
`envFrom` entries are copied as written, never resolved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.config import Config
from webhook.contract import CONTAINER, IMAGE, RELEASE, InjectSpec, Invalid
from webhook.review import JsonPatch
from webhook.tools import TOOLS
from webhook.workloads import Workload

NAME = "schemagate-migrate"
# What `run: once` places instead (webhook/once.py): an init container that waits for the
# release's marker ConfigMap, mounted from a volume, and the release on the template.
WAIT = "schemagate-wait"
VOLUME = "schemagate-release"

# Default commands, from each tool's module. `$(DATABASE_URL)` is Kubernetes' own
# env-var expansion in command/args: no shell is involved anywhere.
PRESETS: Mapping[str, tuple[str, ...]] = {
    name: tool.command for name, tool in TOOLS.items() if tool.command is not None
}

INHERITED = (
    "env",
    "envFrom",
    "volumeMounts",
    "securityContext",
    "resources",
    "imagePullPolicy",
    "workingDir",
)

# Fields the API server fills in on a stored container: their presence on an existing
# schemagate-migrate container is not a difference worth a patch.
_SERVER_DEFAULTS: Mapping[str, Any] = {
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
    "resources": {},
}


@dataclass(slots=True)  # made per admission: see review.AdmissionRequest
class Injection:
    ops: JsonPatch
    warnings: tuple[str, ...]


def init_containers(workload: Workload, obj: Mapping[str, Any]) -> Sequence[Any]:
    value = workload.pod_spec(obj).get("initContainers")
    return value if isinstance(value, list) else []


def find_injected(workload: Workload, obj: Mapping[str, Any]) -> int | None:
    for index, container in enumerate(init_containers(workload, obj)):
        if isinstance(container, dict) and container.get("name") == NAME:
            return index
    return None


def build_container(
    workload: Workload, obj: Mapping[str, Any], spec: InjectSpec, config: Config
) -> dict[str, Any]:
    """The desired init container, or `Invalid` when the workload cannot host one."""
    containers = workload.pod_spec(obj).get("containers")
    if not isinstance(containers, list) or not containers:
        raise Invalid("the pod template has no containers to borrow an image and environment from")
    app = _app_container(containers, spec.container)
    override = config.tool_overrides.get(spec.tool)
    image = spec.image or (override.image if override else None) or app.get("image")
    if not isinstance(image, str) or not image:
        raise Invalid(f"container {app.get('name')!r} has no image; set annotation {IMAGE}")
    command = spec.command or (override.command if override else None) or PRESETS[spec.tool]
    container: dict[str, Any] = {"name": NAME, "image": image, "command": list(command)}
    for key in INHERITED:
        if key in app and app[key] is not None:
            container[key] = app[key]
    return container


@dataclass(slots=True)  # made per admission: see review.AdmissionRequest
class Placement:
    """What schemagate places on a pod template; None: nothing of that kind."""

    migrate: Mapping[str, Any] | None = None
    wait: Mapping[str, Any] | None = None
    volume: Mapping[str, Any] | None = None
    release: str | None = None


def plan_injection(
    workload: Workload, obj: Mapping[str, Any], spec: InjectSpec, config: Config
) -> Injection:
    desired = build_container(workload, obj, spec, config)
    ops = plan_placement(workload, obj, Placement(migrate=desired))
    return Injection(ops, _warnings(workload, obj, spec, desired) if ops else ())


def plan_removal(workload: Workload, obj: Mapping[str, Any]) -> JsonPatch:
    """Ops that take out all schemagate placed (label removed, or switched to gate)."""
    return plan_placement(workload, obj, Placement())


def plan_placement(workload: Workload, obj: Mapping[str, Any], want: Placement) -> JsonPatch:
    """The minimal ops that make the template carry exactly `want` of schemagate's items;
    every change to an existing item is guarded by a `test` op."""
    pod = workload.pod_spec(obj)
    base = workload.pod_pointer
    wanted = {NAME: want.migrate, WAIT: want.wait}
    ops = _converge(base + "/initContainers", pod.get("initContainers"), wanted)
    ops += _converge(base + "/volumes", pod.get("volumes"), {VOLUME: want.volume})
    return ops + _converge_release(workload, obj, want.release)


def _converge(path: str, current: Any, wanted: Mapping[str, Mapping[str, Any] | None]) -> JsonPatch:
    items: list[Any] | None = list(current) if isinstance(current, list) else None
    ops: JsonPatch = []
    for name, desired in wanted.items():
        index = _index(items or [], name)
        if index is None:
            if desired is None:
                continue
            if items is None:
                ops.append({"op": "add", "path": path, "value": [desired]})
                items = [desired]
            else:
                ops.append({"op": "add", "path": path + "/-", "value": desired})
                items.append(desired)
        elif items is not None and desired is None:
            ops += [_guard(path, index, name), {"op": "remove", "path": f"{path}/{index}"}]
            del items[index]
        elif items is not None and desired is not None and not matches(items[index], desired):
            ops += [
                _guard(path, index, name),
                {"op": "replace", "path": f"{path}/{index}", "value": desired},
            ]
            items[index] = desired
    return ops


def _converge_release(workload: Workload, obj: Mapping[str, Any], release: str | None) -> JsonPatch:
    template = workload.template_of(obj)
    meta = template.get("metadata") if isinstance(template, dict) else None
    annots = meta.get("annotations") if isinstance(meta, dict) else None
    current = annots.get(RELEASE) if isinstance(annots, dict) else None
    if current == release:
        return []
    template_path = "/" + "/".join(workload.template)
    annotations_path = template_path + "/metadata/annotations"
    path = annotations_path + "/" + RELEASE.replace("~", "~0").replace("/", "~1")
    if current is not None:
        guard = {"op": "test", "path": path, "value": current}
        if release is None:
            return [guard, {"op": "remove", "path": path}]
        return [guard, {"op": "replace", "path": path, "value": release}]
    if isinstance(annots, dict):
        return [{"op": "add", "path": path, "value": release}]
    if isinstance(meta, dict):
        return [{"op": "add", "path": annotations_path, "value": {RELEASE: release}}]
    metadata = {"annotations": {RELEASE: release}}
    return [{"op": "add", "path": template_path + "/metadata", "value": metadata}]


def _index(items: Sequence[Any], name: str) -> int | None:
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == name:
            return index
    return None


def matches(existing: Any, desired: Mapping[str, Any]) -> bool:
    if not isinstance(existing, dict):
        return False
    for key, value in existing.items():
        if key in desired:
            if desired[key] != value:
                return False
        elif key == "imagePullPolicy":
            continue  # defaulted by the API server from the image tag
        elif _SERVER_DEFAULTS.get(key, _MISSING) != value:
            return False
    return all(key in existing for key in desired)


_MISSING = object()


def _app_container(containers: list[Any], wanted: str | None) -> Mapping[str, Any]:
    named = [c for c in containers if isinstance(c, dict)]
    if wanted is None:
        if not named:
            raise Invalid("the pod template's first container is malformed")
        return named[0]
    for container in named:
        if container.get("name") == wanted:
            return container
    names = ", ".join(str(c.get("name")) for c in named)
    raise Invalid(f"annotation {CONTAINER}: no container named {wanted!r}; containers: {names}")


def _guard(path: str, index: int, name: str) -> dict[str, Any]:
    # A `test` op makes the patch fail rather than touch the wrong item if the array
    # changed between our read and the API server applying the patch.
    return {"op": "test", "path": f"{path}/{index}/name", "value": name}


def _printable(text: str) -> str:
    """kubectl prints warnings to a terminal: escape control characters from the object."""
    if text.isprintable():  # the usual case, checked at once rather than per character
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _warnings(
    workload: Workload, obj: Mapping[str, Any], spec: InjectSpec, container: Mapping[str, Any]
) -> tuple[str, ...]:
    command = " ".join(container["command"])
    notes = [
        f"schemagate injected init container {NAME} ({spec.tool}): "
        f"image {_printable(container['image'])}, command: {_printable(command)}"
    ]
    pods = workload.pods_at_once(obj)
    if not TOOLS[spec.tool].locks and (pods is None or pods > 1):
        many = "one pod per node" if workload.scale is None else f"{workload.scale[-1]}: {pods}"
        notes.append(
            f"{spec.tool} takes no lock: with {many}, several pods may run "
            "migrations at once; consider schemagate.dev/migrate: gate with a single "
            "migration Job"
        )
    return tuple(notes)
