"""Property-based fuzzing of the review codec and the admission decisions (hypothesis).

Random bytes, random JSON and reviews built from the real Deployments of the corpus,
mutated at random paths, with random schemagate labels and annotations (valid values and
junk), random operations and old objects, and every kind of lookup result:

- `review.parse_review` raises nothing but `BadReview` (a one-line 4xx reason);
- `decide.admit` and `decide.finish_gate` never raise;
- every answer encodes to an AdmissionReview with the request's uid, `patchType` exactly
  when there is a patch, and a patch of plain add/replace/remove/test operations;
- every patch applies with jsonpatch, and when the Deployment validated against the
  latest Kubernetes OpenAPI schema (strict), the patched one still does, and admitting
  it again changes nothing more.

`make test` runs a bounded number of examples; `make fuzz` (HYPOTHESIS_PROFILE=fuzz) runs
thousands. The profile is picked here rather than loaded globally: loading a profile
would change every other hypothesis test of the session.
"""

from __future__ import annotations

import base64
import copy
import os
from datetime import UTC, datetime
from typing import Any

import jsonpatch
import kubernetes_validate
import orjson
import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

from tests.factories import corpus, deployment, labelled, review
from webhook import decide
from webhook.config import parse_config
from webhook.contract import ANNOTATIONS, LABEL, PREFIX
from webhook.decide import PendingGate
from webhook.gate import Found, Unreachable
from webhook.review import AdmissionResponse, BadReview, encode, parse_review
from webhook.tools import INJECT_TOOLS
from webhook.versions import Recorded

_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile(
    "fuzz", max_examples=10_000, deadline=None, suppress_health_check=_CHECKS, print_blob=True
)
BOUNDED = settings(max_examples=120, deadline=None, suppress_health_check=_CHECKS)
PROFILE = (
    settings.get_profile("fuzz") if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else BOUNDED
)
# A long `make fuzz` run outlives pytest's default per-test timeout.
pytestmark = pytest.mark.timeout(3600)

CORPUS = [obj for _, obj in corpus()]
SCHEMA = kubernetes_validate.latest_version()
CONFIG = parse_config(
    {
        "databases": {
            "orders": {"url": "sqlite:///o.db", "tool": "flyway", "namespaces": ["shop"]},
            "ledger": {"url": "sqlite:///l.db", "tool": "liquibase", "namespaces": ["*"]},
            "accounts": {"url": "sqlite:///a.db", "tool": "alembic", "namespaces": ["*"]},
            "events": {"url": "sqlite:///e.db", "tool": "golang-migrate", "namespaces": ["*"]},
        },
        "inject": {"tools": {"liquibase": {"image": "liquibase/liquibase:4.29"}}},
    }
)
EXCLUDED = frozenset(("kube-system", "schemagate-system"))

# -- strategies ----------------------------------------------------------------------

TEXT = st.text(max_size=24) | st.text(st.characters(codec="utf-8"), max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=16,
)
VERSIONS = st.sampled_from(["1", "2", "3", "41", "42", "1.10", "2.0", "v42", "abc123", ""])
COMMANDS = st.one_of(
    st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4).map(
        lambda argv: orjson.dumps(argv).decode()
    ),
    st.sampled_from(['["./migrate"]', "[]", '[""]', "not json", "[[[[", '{"a": 1}', "[1, 2]"]),
    TEXT,
)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    PREFIX + "tool": st.sampled_from([*INJECT_TOOLS, "flyaway", ""]),
    PREFIX + "container": st.sampled_from(["api", "app", "main", "nope", " api ", ""]),
    PREFIX + "image": st.sampled_from(["flyway/flyway:10", "img;$(id)", "", "a b"]),
    PREFIX + "command": COMMANDS,
    PREFIX + "database": st.sampled_from(["orders", "ledger", "accounts", "events", "billing"]),
    PREFIX + "schema-version": VERSIONS,
    PREFIX + "version-match": st.sampled_from(["at-least", "exact", "most"]),
    PREFIX + "run": st.sampled_from(["once", "every-pod", "twice", ""]),
    PREFIX + "retry": st.sampled_from(["1", "2026-12-01", "", "a b"]),
}
ANNOTATION = st.one_of(
    *(st.tuples(st.just(key), VALUES[key]) for key in ANNOTATIONS),
    st.tuples(st.sampled_from([*ANNOTATIONS, PREFIX + "tools", "example.com/x"]), JSON),
)
EXTRA = st.lists(ANNOTATION, max_size=5).map(dict)
VALID_COMMAND = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4).map(
    lambda argv: orjson.dumps(argv).decode()
)


@st.composite
def contracts(draw: st.DrawFn) -> tuple[str | None, dict[str, Any]]:
    """A label value and annotations: mostly a valid contract, sometimes with junk on top."""
    mode = draw(st.sampled_from(["inject"] * 4 + ["gate"] * 4 + ["Inject", "", None]))
    annotations: dict[str, Any] = {}
    if mode == "inject":
        annotations[PREFIX + "tool"] = draw(st.sampled_from(INJECT_TOOLS))
        if annotations[PREFIX + "tool"] == "command" or draw(st.booleans()):
            annotations[PREFIX + "command"] = draw(VALID_COMMAND)
    elif mode == "gate":
        annotations[PREFIX + "database"] = draw(VALUES[PREFIX + "database"])
        annotations[PREFIX + "schema-version"] = draw(VERSIONS)
    if draw(st.integers(0, 2)) == 0:
        annotations.update(draw(EXTRA))
    return mode, annotations


@st.composite
def mutated(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """`value` with a few random changes at random paths: replaced, deleted, retyped."""
    if draw(st.integers(0, 9)) == 0 or depth > 8:
        return draw(JSON)
    if isinstance(value, dict) and value:
        out = dict(value)
        for key in draw(st.lists(st.sampled_from(sorted(out)), max_size=2, unique=True)):
            action = draw(st.integers(0, 3))
            if action == 0:
                del out[key]
            else:
                out[key] = draw(mutated(out[key], depth + 1))
        return out
    if isinstance(value, list) and value:
        out_list = list(value)
        index = draw(st.integers(0, len(out_list) - 1))
        action = draw(st.integers(0, 3))
        if action == 0:
            del out_list[index]
        elif action == 1:
            out_list.insert(index, draw(JSON))
        else:
            out_list[index] = draw(mutated(out_list[index], depth + 1))
        return out_list
    return draw(JSON) if draw(st.booleans()) else value


@st.composite
def deployments(draw: st.DrawFn) -> dict[str, Any]:
    obj = copy.deepcopy(draw(st.sampled_from(CORPUS)))
    mode, annotations = draw(contracts())
    if mode is not None:
        obj = labelled(obj, mode, annotations)
    elif annotations:
        obj.setdefault("metadata", {})["annotations"] = annotations
    if draw(st.integers(0, 4)) == 0:
        obj = draw(mutated(obj))
    return obj if isinstance(obj, dict) else {"kind": obj}


@st.composite
def reviews(draw: st.DrawFn) -> dict[str, Any]:
    obj = draw(deployments())
    operation = draw(st.sampled_from(["CREATE"] * 5 + ["UPDATE"] * 3 + ["DELETE", "CONNECT"]))
    old = None
    if operation in ("UPDATE", "DELETE"):
        old = draw(st.one_of(st.just(copy.deepcopy(obj)), deployments()))
    # The factory builds the envelope; the (possibly mangled) objects go in afterwards.
    doc = review(
        deployment(str(draw(st.sampled_from([*_names(obj), "api"])))),
        operation=operation,
        namespace=draw(
            st.sampled_from(["shop"] * 6 + ["tenant"] * 2 + ["kube-system", "schemagate-system"])
        ),
        uid=draw(st.text(min_size=1, max_size=40)),
        kind=draw(
            st.sampled_from(
                [("apps", "v1", "Deployment")] * 8
                + [("apps", "v1beta1", "Deployment"), ("", "v1", "Pod"), ("apps", "v1", "Scale")]
            )
        ),
        dry_run=draw(st.booleans()),
    )
    doc["request"]["object"] = None if operation == "DELETE" else obj
    doc["request"]["oldObject"] = old
    return doc


def _names(obj: dict[str, Any]) -> list[str]:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return [name] if isinstance(name, str) else []


FOUND = st.one_of(
    st.builds(Unreachable, TEXT),
    st.builds(
        Recorded,
        table_present=st.booleans(),
        latest=st.none() | VERSIONS,
        applied_at=st.none() | st.just(datetime(2026, 11, 20, 10, tzinfo=UTC)),
        present=st.frozensets(VERSIONS, max_size=3),
        heads=st.lists(VERSIONS, max_size=2).map(tuple),
        problems=st.lists(TEXT, max_size=2).map(tuple),
    ),
)

# -- properties ----------------------------------------------------------------------


def _bodies() -> st.SearchStrategy[bytes]:
    whole = reviews().map(orjson.dumps)
    return st.one_of(
        st.binary(max_size=256),
        JSON.map(orjson.dumps),
        whole,
        st.tuples(whole, st.floats(0, 1)).map(lambda t: t[0][: int(len(t[0]) * t[1])]),
        reviews().flatmap(mutated).map(orjson.dumps),
    )


@PROFILE
@given(body=_bodies())
def test_parse_review_raises_only_bad_review(body: bytes) -> None:
    try:
        parse_review(body)
        event("parsed")
    except BadReview as exc:
        refused = exc
        event("BadReview")
    else:
        return
    assert refused.status in (400, 413)
    reason = str(refused)
    assert reason and "\n" not in reason and len(reason) < 200


def _validates(obj: Any) -> bool:
    """Whether `obj` is a Deployment the API server's schema accepts (strict)."""
    if not isinstance(obj, dict) or (obj.get("apiVersion"), obj.get("kind")) != (
        "apps/v1",
        "Deployment",
    ):
        return False
    try:
        kubernetes_validate.validate(obj, SCHEMA, strict=True)
    except Exception:  # on junk the validator fails in many ways; each means "not valid"
        return False
    return True


def _check_encoding(uid: str, answer: AdmissionResponse) -> list[dict[str, Any]] | None:
    doc = orjson.loads(orjson.dumps(encode(uid, answer)))
    assert doc["apiVersion"] == "admission.k8s.io/v1"
    assert doc["kind"] == "AdmissionReview"
    body = doc["response"]
    assert body["uid"] == uid
    assert isinstance(body["allowed"], bool)
    assert set(body) <= {"uid", "allowed", "status", "patchType", "patch", "warnings"}
    if "status" in body:
        assert isinstance(body["status"].get("code"), int)
        assert isinstance(body["status"].get("message", ""), str)
    assert all(isinstance(w, str) for w in body.get("warnings", []))
    assert ("patchType" in body) == ("patch" in body)
    if "patch" not in body:
        return None
    assert body["allowed"] is True and body["patchType"] == "JSONPatch"
    ops: list[dict[str, Any]] = orjson.loads(base64.b64decode(body["patch"], validate=True))
    assert ops and all(op["op"] in ("add", "replace", "remove", "test") for op in ops)
    assert all(op["path"].startswith("/spec/template/spec/initContainers") for op in ops)
    return ops


@PROFILE
@given(doc=reviews(), found=FOUND, policy=st.sampled_from(["closed", "open"]))
def test_every_review_gets_a_well_formed_answer_and_patches_apply(
    doc: dict[str, Any], found: Found, policy: str
) -> None:
    try:
        request = parse_review(orjson.dumps(doc))
    except BadReview:
        assume(False)
        raise
    config = CONFIG if policy == "closed" else parse_config({"on_unreachable": "open"})
    route = decide.mode(request, EXCLUDED)
    result = decide.admit(request, CONFIG, route)
    note(f"route {route}: {result}")
    event(f"route {route}")
    answer = (
        decide.finish_gate(result, found, config) if isinstance(result, PendingGate) else result
    )
    ops = _check_encoding(request.uid, answer)
    if route == "pass":
        assert answer == AdmissionResponse(True)
    if ops is None:
        return
    obj = doc["request"]["object"]
    patched = jsonpatch.apply_patch(obj, ops)
    if _validates(obj):
        event("patched a valid Deployment")
        assert _validates(patched), ops
        # Idempotent: admitting the result again asks for nothing more.
        again = parse_review(
            orjson.dumps({**doc, "request": {**doc["request"], "object": patched}})
        )
        second = decide.admit(again, CONFIG, decide.mode(again, EXCLUDED))
        if isinstance(second, PendingGate):
            second = decide.finish_gate(second, found, config)
        assert second.patch is None, second


@PROFILE
@given(
    obj=st.sampled_from(CORPUS),
    tool=st.sampled_from(INJECT_TOOLS),
    command=st.lists(st.text(min_size=1).filter(lambda a: "\x00" not in a), min_size=1, max_size=5),
)
def test_valid_corpus_deployments_stay_valid_whatever_the_command(
    obj: dict[str, Any], tool: str, command: list[str]
) -> None:
    """Any argv text at all (quotes, `$(...)`, newlines, non-Latin) lands verbatim."""
    annotations = {PREFIX + "tool": tool, PREFIX + "command": orjson.dumps(command).decode()}
    if "image" not in obj["spec"]["template"]["spec"]["containers"][0]:
        annotations[PREFIX + "image"] = "flyway/flyway:10"
    source = labelled(obj, "inject", annotations)
    request = parse_review(orjson.dumps(review(source)))
    answer = decide.admit(request, CONFIG, decide.mode(request, EXCLUDED))
    assert isinstance(answer, AdmissionResponse)
    ops = _check_encoding(request.uid, answer)
    assert ops is not None, answer.message
    patched = jsonpatch.apply_patch(source, ops)
    assert patched["spec"]["template"]["spec"]["initContainers"][-1]["command"] == command
    assert _validates(patched)
    assert LABEL in patched["metadata"]["labels"]
