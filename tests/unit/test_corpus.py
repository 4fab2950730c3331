"""Every real Deployment in the corpus, unlabelled and labelled for each tool."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import kubernetes_validate
import orjson
import pytest

from tests.factories import corpus, labelled, review
from webhook import decide
from webhook.config import Config
from webhook.inject import INHERITED, NAME
from webhook.review import AdmissionResponse, parse_review
from webhook.tools import INJECT_TOOLS

CORPUS = corpus()
IDS = [name for name, _ in CORPUS]
SCHEMA_VERSION = kubernetes_validate.latest_version()
CONFIG = Config()


def _admit(obj: dict[str, Any], **kw: Any) -> AdmissionResponse:
    request = parse_review(orjson.dumps(review(obj, **kw)))
    result = decide.admit(request, CONFIG, decide.mode(request))
    assert isinstance(result, AdmissionResponse)
    return result


@pytest.mark.parametrize(("name", "obj"), CORPUS, ids=IDS)
def test_unlabelled_corpus_is_allowed_untouched(name: str, obj: dict[str, Any]) -> None:
    answer = _admit(obj)
    assert answer.allowed and answer.patch is None and answer.warnings == ()


# Every preset is placed the same way, so a few tools (one per shape of command: plain,
# with $(DATABASE_URL), the Deployment's own) cover the corpus; test_inject and test_http
# check each tool's preset.
CORPUS_TOOLS = ("flyway", "alembic", "golang-migrate", "atlas", "command")
assert set(CORPUS_TOOLS) <= set(INJECT_TOOLS)


@pytest.mark.parametrize("tool", CORPUS_TOOLS)
@pytest.mark.parametrize(("name", "obj"), CORPUS, ids=IDS)
def test_labelled_corpus_gets_exactly_one_valid_injection(
    name: str, obj: dict[str, Any], tool: str
) -> None:
    annotations = {"schemagate.dev/tool": tool}
    if tool == "command":
        annotations["schemagate.dev/command"] = '["./migrate", "up"]'
    if "image" not in obj["spec"]["template"]["spec"]["containers"][0]:
        # Published with a placeholder app container and no image: refused until one is named.
        refused = _admit(labelled(obj, "inject", annotations))
        assert not refused.allowed and refused.code == 422
        assert "has no image; set annotation schemagate.dev/image" in (refused.message or "")
        annotations["schemagate.dev/image"] = "flyway/flyway:10"
    original = labelled(obj, "inject", annotations)
    answer = _admit(original)
    assert answer.allowed and answer.patch, answer.message
    result = jsonpatch.apply_patch(original, answer.patch)
    kubernetes_validate.validate(result, SCHEMA_VERSION, strict=True)

    pod, before = result["spec"]["template"]["spec"], original["spec"]["template"]["spec"]
    inits = pod["initContainers"]
    assert [c["name"] for c in inits].count(NAME) == 1
    assert inits[-1]["name"] == NAME
    assert inits[:-1] == before.get("initContainers", [])
    app = before["containers"][0]
    injected = inits[-1]
    assert injected["image"] == annotations.get("schemagate.dev/image", app.get("image"))
    for key in INHERITED:
        assert injected.get(key) == app.get(key), key
    assert set(injected) <= {"name", "image", "command", *INHERITED}

    # Nothing outside spec.template.spec.initContainers changed.
    rest_after, rest_before = copy.deepcopy(result), copy.deepcopy(original)
    del rest_after["spec"]["template"]["spec"]["initContainers"]
    rest_before["spec"]["template"]["spec"].pop("initContainers", None)
    assert rest_after == rest_before

    again = _admit(result)
    assert again.allowed and again.patch is None
