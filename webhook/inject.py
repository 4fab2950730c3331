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
from webhook.contract import CONTAINER, IMAGE, InjectSpec, Invalid
from webhook.review import JsonPatch
from webhook.tools import TOOLS
from webhook.workloads import Workload

NAME = "schemagate-migrate"

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


@dataclass(frozen=True, slots=True)
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


def plan_injection(
    workload: Workload, obj: Mapping[str, Any], spec: InjectSpec, config: Config
) -> Injection:
    desired = build_container(workload, obj, spec, config)
    path = _init_path(workload)
    index = find_injected(workload, obj)
    if index is None:
        if isinstance(workload.pod_spec(obj).get("initContainers"), list):
            ops: JsonPatch = [{"op": "add", "path": path + "/-", "value": desired}]
        else:
            ops = [{"op": "add", "path": path, "value": [desired]}]
    elif matches(init_containers(workload, obj)[index], desired):
        ops = []
    else:
        ops = [
            _guard(workload, index),
            {"op": "replace", "path": f"{path}/{index}", "value": desired},
        ]
    return Injection(ops, _warnings(workload, obj, spec, desired) if ops else ())


def plan_removal(workload: Workload, obj: Mapping[str, Any]) -> JsonPatch:
    """Ops that take the injected container out (label removed, or switched to gate)."""
    index = find_injected(workload, obj)
    if index is None:
        return []
    return [_guard(workload, index), {"op": "remove", "path": f"{_init_path(workload)}/{index}"}]


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


def _init_path(workload: Workload) -> str:
    return workload.pod_pointer + "/initContainers"


def _guard(workload: Workload, index: int) -> dict[str, Any]:
    # A `test` op makes the patch fail rather than touch the wrong container if the
    # array changed between our read and the API server applying the patch.
    return {"op": "test", "path": f"{_init_path(workload)}/{index}/name", "value": NAME}


def _printable(text: str) -> str:
    """kubectl prints warnings to a terminal: escape control characters from the object."""
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
