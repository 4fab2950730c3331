"""Inject mode over data: the container, its placement, idempotency and removal."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from tests.factories import deployment, workload
from webhook.config import Config, ToolOverride
from webhook.contract import InjectSpec, Invalid
from webhook.inject import NAME, PRESETS, build_container, plan_injection, plan_removal
from webhook.tools import TOOLS

CONFIG = Config()
DEPLOYMENT = workload("Deployment")


def _apply(obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = jsonpatch.apply_patch(obj, ops)
    return result


def _spec(tool: str = "flyway", **kw: Any) -> InjectSpec:
    return InjectSpec(tool, kw.get("container"), kw.get("image"), kw.get("command"))


@pytest.mark.parametrize("tool", sorted(PRESETS))
def test_preset_commands(tool: str) -> None:
    container = build_container(DEPLOYMENT, deployment(), _spec(tool), CONFIG)
    assert container["command"] == list(PRESETS[tool])


def test_container_inherits_from_the_app_container() -> None:
    obj = deployment()
    app = obj["spec"]["template"]["spec"]["containers"][0]
    container = build_container(DEPLOYMENT, obj, _spec(), CONFIG)
    assert container == {
        "name": NAME,
        "image": app["image"],
        "command": ["flyway", "migrate"],
        "env": app["env"],
        "envFrom": app["envFrom"],
        "volumeMounts": app["volumeMounts"],
        "securityContext": app["securityContext"],
        "resources": app["resources"],
        "imagePullPolicy": "IfNotPresent",
        "workingDir": "/app",
    }
    # Secrets stay references; ports and probes are the app's alone.
    assert container["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "url"}
    assert "ports" not in container


def test_named_container_annotation_image_and_command_win() -> None:
    obj = deployment(
        containers=[
            {"name": "proxy", "image": "proxy:1"},
            {"name": "api", "image": "api:2", "env": [{"name": "A", "value": "1"}]},
        ]
    )
    config = Config(tool_overrides={"flyway": ToolOverride("flyway/flyway:10", ("flyway", "-X"))})
    assert build_container(DEPLOYMENT, obj, _spec(container="api"), config) == {
        "name": NAME,
        "image": "flyway/flyway:10",
        "command": ["flyway", "-X"],
        "env": [{"name": "A", "value": "1"}],
    }
    spec = _spec(container="api", image="mine:3", command=("m", "up"))
    assert build_container(DEPLOYMENT, obj, spec, config)["image"] == "mine:3"
    assert build_container(DEPLOYMENT, obj, spec, config)["command"] == ["m", "up"]


@pytest.mark.parametrize(
    ("obj", "spec", "message"),
    [
        (
            deployment(),
            _spec(container="worker"),
            "annotation schemagate.dev/container: no container named 'worker'; containers: api",
        ),
        (
            deployment(containers=[{"name": "api"}]),
            _spec(),
            "container 'api' has no image; set annotation schemagate.dev/image",
        ),
        (
            {"spec": {"template": {"spec": {"containers": []}}}},
            _spec(),
            "the pod template has no containers to borrow an image and environment from",
        ),
    ],
)
def test_cannot_inject(obj: dict[str, Any], spec: InjectSpec, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        build_container(DEPLOYMENT, obj, spec, CONFIG)
    assert str(caught.value) == message


def test_creates_the_array_when_absent_and_appends_otherwise() -> None:
    bare = deployment()
    plan = plan_injection(DEPLOYMENT, bare, _spec(), CONFIG)
    assert [(op["op"], op["path"]) for op in plan.ops] == [
        ("add", "/spec/template/spec/initContainers")
    ]
    sidecar = {"name": "proxy", "image": "proxy:1", "restartPolicy": "Always"}
    with_init = deployment(init_containers=[{"name": "wait", "image": "busybox"}, sidecar])
    plan = plan_injection(DEPLOYMENT, with_init, _spec(), CONFIG)
    assert [(op["op"], op["path"]) for op in plan.ops] == [
        ("add", "/spec/template/spec/initContainers/-")
    ]
    result = _apply(with_init, plan.ops)
    names = [c["name"] for c in result["spec"]["template"]["spec"]["initContainers"]]
    assert names == ["wait", "proxy", NAME]


def test_readmission_is_a_no_op_even_with_server_defaults() -> None:
    obj = deployment(init_containers=[{"name": "wait", "image": "busybox"}])
    once = _apply(obj, plan_injection(DEPLOYMENT, obj, _spec(), CONFIG).ops)
    assert plan_injection(DEPLOYMENT, once, _spec(), CONFIG).ops == []
    stored = copy.deepcopy(once)
    injected = stored["spec"]["template"]["spec"]["initContainers"][1]
    injected.update(terminationMessagePath="/dev/termination-log", terminationMessagePolicy="File")
    assert plan_injection(DEPLOYMENT, stored, _spec(), CONFIG).ops == []


def test_a_changed_container_is_replaced_in_place_and_others_are_left_alone() -> None:
    obj = deployment(init_containers=[{"name": "wait", "image": "busybox"}])
    once = _apply(obj, plan_injection(DEPLOYMENT, obj, _spec(), CONFIG).ops)
    # Another webhook appended a container after ours: it keeps its place.
    once["spec"]["template"]["spec"]["initContainers"].append({"name": "other", "image": "o"})
    plan = plan_injection(DEPLOYMENT, once, _spec(image="flyway/flyway:11"), CONFIG)
    assert plan.ops[0] == {
        "op": "test",
        "path": "/spec/template/spec/initContainers/1/name",
        "value": NAME,
    }
    assert plan.ops[1]["op"] == "replace"
    assert plan.ops[1]["path"] == "/spec/template/spec/initContainers/1"
    result = _apply(once, plan.ops)
    inits = result["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["wait", NAME, "other"]
    assert inits[1]["image"] == "flyway/flyway:11"


def test_removal_takes_out_only_the_injected_container() -> None:
    obj = deployment(init_containers=[{"name": "wait", "image": "busybox"}])
    once = _apply(obj, plan_injection(DEPLOYMENT, obj, _spec(), CONFIG).ops)
    assert _apply(once, plan_removal(DEPLOYMENT, once)) == obj
    assert plan_removal(DEPLOYMENT, obj) == []


def test_warnings_say_what_was_injected_and_warn_about_alembic_replicas() -> None:
    plan = plan_injection(DEPLOYMENT, deployment(replicas=3), _spec("alembic"), CONFIG)
    assert plan.warnings[0] == (
        "schemagate injected init container schemagate-migrate (alembic): "
        "image ghcr.io/example/api:1.0, command: alembic upgrade head"
    )
    assert "alembic takes no lock: with replicas: 3," in plan.warnings[1]
    assert (
        len(plan_injection(DEPLOYMENT, deployment(replicas=1), _spec("alembic"), CONFIG).warnings)
        == 1
    )


def test_warnings_escape_control_characters_from_the_object() -> None:
    spec = _spec("command", command=("./migrate", "\x1b[31mred\x1b[0m", "tab\there"))
    (note,) = plan_injection(DEPLOYMENT, deployment(), spec, CONFIG).warnings
    assert note.endswith(r"command: ./migrate \x1b[31mred\x1b[0m tab\there")
    # The container itself carries the arguments exactly as written.
    container = build_container(DEPLOYMENT, deployment(), spec, CONFIG)
    assert container["command"] == ["./migrate", "\x1b[31mred\x1b[0m", "tab\there"]


@pytest.mark.parametrize("tool", [name for name, t in TOOLS.items() if not t.locks])
def test_tools_without_a_lock_warn_about_replicas(tool: str) -> None:
    plan = plan_injection(DEPLOYMENT, deployment(replicas=2), _spec(tool), CONFIG)
    assert plan.warnings[1] == (
        f"{tool} takes no lock: with replicas: 2, several pods may run migrations at once; "
        "consider schemagate.dev/migrate: gate with a single migration Job"
    )
