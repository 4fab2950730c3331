"""The AdmissionReview codec: bad bodies are 4xx reasons, good ones round-trip the uid."""

from __future__ import annotations

import base64

import orjson
import pytest

from tests.factories import deployment, review
from webhook.review import (
    MAX_BODY_BYTES,
    BadReview,
    allowed,
    denied,
    encode,
    errored,
    parse_review,
    patched,
)


def _body(doc: object) -> bytes:
    return orjson.dumps(doc)


def _without(key: str) -> dict[str, object]:
    doc = review(deployment())
    del doc["request"][key]
    return doc


BAD = [
    (b"not json", 400, "body is not valid JSON"),
    (b"[1, 2]", 400, "body must be a JSON object (an AdmissionReview)"),
    (_body({"apiVersion": "admission.k8s.io/v1"}), 400, "kind must be AdmissionReview, got None"),
    (
        _body({**review(deployment()), "apiVersion": "admission.k8s.io/v1beta1"}),
        400,
        "apiVersion must be admission.k8s.io/v1, got 'admission.k8s.io/v1beta1'",
    ),
    (
        _body({**review(deployment()), "kind": "Deployment"}),
        400,
        "kind must be AdmissionReview, got 'Deployment'",
    ),
    (
        _body({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
        400,
        "request is missing or not an object",
    ),
    (_body(_without("uid")), 400, "request.uid is missing or not a non-empty string"),
    (
        _body(_without("operation")),
        400,
        "request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, got None",
    ),
    (_body(_without("kind")), 400, "request.kind is missing or not an object"),
    (
        _body({**review(None), "request": {**review(None)["request"], "object": [1]}}),
        400,
        "request.object must be an object or null",
    ),
    (
        b" " * (MAX_BODY_BYTES + 1),
        413,
        f"body of {MAX_BODY_BYTES + 1} bytes exceeds the {MAX_BODY_BYTES} byte limit",
    ),
]


# Named by what they expect: some bodies carry random uids, and every pytest-xdist worker
# must collect the same test ids.
@pytest.mark.parametrize(("body", "status", "reason"), BAD, ids=[case[2] for case in BAD])
def test_bad_bodies_are_refused_with_a_reason(body: bytes, status: int, reason: str) -> None:
    with pytest.raises(BadReview) as caught:
        parse_review(body)
    assert (caught.value.status, str(caught.value)) == (status, reason)


def test_parse_reads_the_request() -> None:
    doc = review(
        deployment("web", "shop"),
        operation="UPDATE",
        old=deployment("web", "shop"),
        uid="u-1",
        dry_run=True,
    )
    req = parse_review(_body(doc))
    assert (req.uid, req.operation, req.namespace, req.name, req.ref) == (
        "u-1",
        "UPDATE",
        "shop",
        "web",
        "shop/web",
    )
    assert (req.group, req.version, req.kind) == ("apps", "v1", "Deployment")
    assert req.dry_run
    assert req.username == "kubernetes-admin"
    assert req.old_object is not None and req.object is not None


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (allowed(), {"uid": "u", "allowed": True}),
        (allowed(["note"]), {"uid": "u", "allowed": True, "warnings": ["note"]}),
        (
            denied("no", 422),
            {"uid": "u", "allowed": False, "status": {"code": 422, "message": "no"}},
        ),
        (
            errored(500, "boom"),
            {"uid": "u", "allowed": False, "status": {"code": 500, "message": "boom"}},
        ),
        (patched([]), {"uid": "u", "allowed": True}),
    ],
)
def test_encode_without_patch(response: object, expected: dict[str, object]) -> None:
    out = encode("u", response)  # type: ignore[arg-type]
    assert out == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": expected,
    }


def test_encode_patch_is_base64_json_with_patch_type() -> None:
    ops = [{"op": "add", "path": "/a", "value": 1}]
    out = encode("u", patched(ops, ["w"]))["response"]
    assert out["patchType"] == "JSONPatch"
    assert orjson.loads(base64.b64decode(out["patch"])) == ops
    assert out["warnings"] == ["w"]
