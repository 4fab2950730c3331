"""The AdmissionReview wire format (admission.k8s.io/v1): the only module that knows it.

`parse_review` turns a request body into a typed `AdmissionRequest` or raises
`BadReview` (an HTTP 4xx, not a denial). Responses are built by the named
constructors `allowed`, `denied`, `patched`, `errored` and serialised by `encode`,
which echoes apiVersion, kind and uid and sets patchType only with a patch.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import orjson

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
# The largest review the API server can send, the one limit on a request body (webhook.app
# checks the declared length against it, aiohttp the bytes read, `parse_review` the body).
# The API server refuses request bodies over 3 MiB, so no object it admits is larger; an
# UPDATE's review carries two (the object and the old object), plus a small envelope (uid,
# kind, userInfo, options).
API_SERVER_BODY_BYTES = 3 * 1024 * 1024
ENVELOPE_BYTES = 64 * 1024
MAX_BODY_BYTES = 2 * API_SERVER_BODY_BYTES + ENVELOPE_BYTES

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
_OPERATIONS: frozenset[str] = frozenset(("CREATE", "UPDATE", "DELETE", "CONNECT"))

JsonPatch = list[dict[str, Any]]


class BadReview(ValueError):
    """The body is not an AdmissionReview we can answer; str() is a one-line reason."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


# The records made for every admission (this one, the response, the parsed annotations,
# the plan) are slotted dataclasses that nothing mutates, but not frozen: a frozen
# dataclass's __init__ sets each field through object.__setattr__, which cost about 4 %
# of an admission's CPU in the compiled image (bench/README.md).
@dataclass(slots=True)
class AdmissionRequest:
    uid: str
    group: str
    version: str
    kind: str
    operation: str
    namespace: str
    name: str
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None
    dry_run: bool
    username: str

    @property
    def ref(self) -> str:
        """`namespace/name` for messages and logs."""
        return f"{self.namespace}/{self.name}"


@dataclass(slots=True)  # made per admission: see review.AdmissionRequest
class AdmissionResponse:
    allowed: bool
    code: int | None = None
    message: str | None = None
    patch: JsonPatch | None = None
    warnings: tuple[str, ...] = ()


def allowed(warnings: Sequence[str] = ()) -> AdmissionResponse:
    return AdmissionResponse(True, warnings=tuple(warnings))


def denied(message: str, code: int = 403) -> AdmissionResponse:
    return AdmissionResponse(False, code=code, message=message)


def patched(ops: JsonPatch, warnings: Sequence[str] = ()) -> AdmissionResponse:
    """Allow with a JSON Patch; an empty patch is a plain allow (no patchType at all)."""
    return AdmissionResponse(True, patch=ops or None, warnings=tuple(warnings))


def errored(code: int, message: str) -> AdmissionResponse:
    """An internal failure answered as a review, so the API server applies failurePolicy."""
    return AdmissionResponse(False, code=code, message=message)


class _Status(TypedDict, total=False):
    code: int
    message: str


class _ResponseBody(TypedDict, total=False):
    uid: str
    allowed: bool
    status: _Status
    patchType: str
    patch: str
    warnings: list[str]


class ReviewBody(TypedDict):
    apiVersion: str
    kind: str
    response: _ResponseBody


def encode(uid: str, response: AdmissionResponse) -> ReviewBody:
    body: _ResponseBody = {"uid": uid, "allowed": response.allowed}
    if response.code is not None or response.message is not None:
        status: _Status = {}
        if response.code is not None:
            status["code"] = response.code
        if response.message is not None:
            status["message"] = response.message
        body["status"] = status
    if response.patch:
        body["patchType"] = "JSONPatch"
        body["patch"] = base64.b64encode(orjson.dumps(response.patch)).decode("ascii")
    if response.warnings:
        body["warnings"] = list(response.warnings)
    return {"apiVersion": API_VERSION, "kind": KIND, "response": body}


def dumps(review: ReviewBody) -> bytes:
    return orjson.dumps(review)


def parse_review(body: bytes) -> AdmissionRequest:
    """Decode and check an AdmissionReview request body."""
    if len(body) > MAX_BODY_BYTES:
        raise BadReview(f"body of {len(body)} bytes exceeds the {MAX_BODY_BYTES} byte limit", 413)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadReview("body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadReview("body must be a JSON object (an AdmissionReview)")
    if doc.get("kind") != KIND:
        raise BadReview(f"kind must be {KIND}, got {show(doc.get('kind'))}")
    if doc.get("apiVersion") != API_VERSION:
        raise BadReview(f"apiVersion must be {API_VERSION}, got {show(doc.get('apiVersion'))}")
    req = doc.get("request")
    if not isinstance(req, dict):
        raise BadReview("request is missing or not an object")
    uid = req.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("request.uid is missing or not a non-empty string")
    operation = req.get("operation")
    if not isinstance(operation, str) or operation not in _OPERATIONS:
        raise BadReview(
            f"request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, "
            f"got {show(operation)}"
        )
    gvk = req.get("kind")
    if not isinstance(gvk, dict):
        raise BadReview("request.kind is missing or not an object")
    obj = _object(req, "object")
    old = _object(req, "oldObject")
    user = req.get("userInfo")
    username = user.get("username") if isinstance(user, dict) else None
    return AdmissionRequest(
        uid=uid,
        group=_str(gvk.get("group")),
        version=_str(gvk.get("version")),
        kind=_str(gvk.get("kind")),
        operation=operation,
        namespace=_str(req.get("namespace")),
        name=_str(req.get("name")) or _str(_metadata(obj).get("name")),
        object=obj,
        old_object=old,
        dry_run=req.get("dryRun") is True,
        username=_str(username),
    )


def _object(req: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = req.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadReview(f"request.{key} must be an object or null")
    return value


def _metadata(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    meta = obj.get("metadata") if obj else None
    return meta if isinstance(meta, dict) else {}


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def show(value: object, limit: int = 80) -> str:
    """A short rendering of a bad value for a one-line reason (repr escapes control bytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
