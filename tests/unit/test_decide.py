"""Routing: what passes untouched before any parsing, and label removal."""

from __future__ import annotations

import jsonpatch
import orjson
import pytest

from tests.factories import deployment, review
from tests.support import wording
from webhook import decide
from webhook.config import Config
from webhook.inject import NAME
from webhook.review import AdmissionResponse, parse_review

INJECT = {"schemagate.dev/tool": "flyway"}


def _route(doc: dict[str, object]) -> str:
    return decide.mode(
        parse_review(orjson.dumps(doc)), frozenset({"kube-system", "schemagate-system"})
    )


@pytest.mark.parametrize(
    ("doc", "route"),
    [
        (review(deployment(mode="inject")), "inject"),
        (review(deployment(mode="gate")), "gate"),
        (review(deployment(mode="sometimes")), "invalid"),
        (review(deployment()), "pass"),
        (review(deployment(mode="inject"), kind=("apps", "v1", "StatefulSet")), "inject"),
        (review(deployment(mode="inject"), kind=("", "v1", "Pod")), "pass"),
        (review(deployment(mode="inject"), kind=("example.com", "v1", "Deployment")), "pass"),
        (review(deployment(mode="inject"), kind=("apps", "v1beta1", "Deployment")), "pass"),
        (review(None, operation="DELETE", old=deployment(mode="inject")), "pass"),
        (review(deployment(mode="inject"), operation="CONNECT"), "pass"),
        (review(deployment(mode="inject", namespace="kube-system")), "pass"),
        (review(deployment(mode="inject", namespace="schemagate-system")), "pass"),
        (review(deployment(), operation="UPDATE", old=deployment(mode="inject")), "removed"),
    ],
)
def test_routes(doc: dict[str, object], route: str) -> None:
    assert _route(doc) == route


def test_invalid_label_value_is_a_denial_naming_the_label() -> None:
    request = parse_review(orjson.dumps(review(deployment(mode="sometimes"))))
    answer = decide.admit(request, Config(), decide.mode(request))
    assert isinstance(answer, AdmissionResponse)
    assert (answer.allowed, answer.code, answer.message) == (
        False,
        422,
        "shop/api: label schemagate.dev/migrate: 'sometimes' is not one of inject, gate",
    )


def test_removing_the_label_removes_the_injected_container() -> None:
    labelled = deployment(mode="inject", annotations=INJECT)
    request = parse_review(orjson.dumps(review(labelled)))
    first = decide.admit(request, Config(), "inject")
    assert isinstance(first, AdmissionResponse)
    assert first.patch is not None
    injected = jsonpatch.apply_patch(labelled, first.patch)
    unlabelled = deployment(annotations=INJECT)
    unlabelled["spec"] = injected["spec"]
    request = parse_review(orjson.dumps(review(unlabelled, operation="UPDATE", old=injected)))
    answer = decide.admit(request, Config(), decide.mode(request))
    assert isinstance(answer, AdmissionResponse) and answer.allowed and answer.patch
    result = jsonpatch.apply_patch(unlabelled, answer.patch)
    assert NAME not in [
        c["name"] for c in result["spec"]["template"]["spec"].get("initContainers", [])
    ]
    assert answer.warnings == (wording.removed("Deployment"),)
