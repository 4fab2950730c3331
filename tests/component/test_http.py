"""The server over a real TLS socket: bad input, endpoints, the corpus and every tool."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import corpus, deployment, labelled, review
from tests.server import Served, start
from webhook.inject import NAME, PRESETS
from webhook.review import API_SERVER_BODY_BYTES, MAX_BODY_BYTES
from webhook.tools import INJECT_TOOLS

pytestmark = pytest.mark.component


@pytest.fixture(scope="module")
def served(tls_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("http")
    config = tmp / "config.yaml"
    config.write_text("inject:\n  tools:\n    liquibase: {image: liquibase/liquibase:4.29}\n")
    server = start(config, tls_dir, tmp / "serve.log")
    yield server
    assert server.stop() == 0


BAD = [
    ("POST", b"{not json", "application/json", 400, "body is not valid JSON"),
    ("POST", b"{}", "text/plain", 415, "content type must be application/json, got text/plain"),
    (
        "POST",
        orjson.dumps({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}),
        "application/json",
        400,
        "request is missing or not an object",
    ),
    (
        "POST",
        orjson.dumps({**review(deployment()), "apiVersion": "v1"}),
        "application/json",
        400,
        "apiVersion must be admission.k8s.io/v1, got 'v1'",
    ),
    (
        "POST",
        b"{" + b" " * MAX_BODY_BYTES + b"}",
        "application/json",
        413,
        f"body of {MAX_BODY_BYTES + 2} bytes exceeds the {MAX_BODY_BYTES} byte limit",
    ),
    ("GET", None, "application/json", 405, "405: Method Not Allowed"),
    ("PUT", b"{}", "application/json", 405, "405: Method Not Allowed"),
]


# Named by what they expect: some bodies carry random uids, and every pytest-xdist worker
# must collect the same test ids.
@pytest.mark.parametrize(
    ("method", "body", "ctype", "status", "reason"), BAD, ids=[case[4] for case in BAD]
)
def test_bad_requests_get_a_4xx_with_one_line(
    served: Served, method: str, body: bytes | None, ctype: str, status: int, reason: str
) -> None:
    got_status, got_body = served.request(method, "/mutate", body, ctype)
    assert (got_status, got_body.decode().strip()) == (status, reason)
    assert b"Traceback" not in got_body


def test_health_readiness_and_metrics(served: Served) -> None:
    assert served.request("GET", "/healthz") == (200, b"ok\n")
    assert served.request("GET", "/readyz") == (200, b"ready\n")
    before = served.metric("schemagate_admission_requests_total", mode="inject")
    served.admit(review(labelled(deployment(), "inject", {"schemagate.dev/tool": "flyway"})))
    assert (
        served.metric("schemagate_admission_requests_total", mode="inject", decision="patched") >= 1
    )
    assert served.metric("schemagate_admission_requests_total", mode="inject") == before + 1
    assert served.metric("schemagate_admission_duration_seconds_count", mode="inject") >= 1
    assert served.metric("schemagate_admission_in_flight") == 0
    assert served.metric("schemagate_tls_cert_expiry_timestamp_seconds") > 1.7e9


def test_tls_below_1_2_is_refused(served: Served) -> None:
    context = ssl.create_default_context(cafile=str(served.tls_dir / "ca.crt"))
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    conn = served.connection()
    conn._context = context  # type: ignore[attr-defined]
    with pytest.raises(ssl.SSLError):
        conn.request("GET", "/healthz")
    conn.close()


@pytest.mark.parametrize(("name", "obj"), corpus(), ids=[n for n, _ in corpus()])
def test_unlabelled_corpus_is_allowed_untouched(
    served: Served, name: str, obj: dict[str, Any]
) -> None:
    doc = review(obj, uid=f"uid-{name}")
    answer = served.admit(doc)
    assert answer == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": f"uid-{name}", "allowed": True},
    }


@pytest.mark.parametrize("tool", INJECT_TOOLS)
def test_inject_patch_per_tool(served: Served, tool: str) -> None:
    annotations = {"schemagate.dev/tool": tool}
    if tool == "command":
        annotations["schemagate.dev/command"] = '["./bin/migrate", "--up"]'
    obj = labelled(deployment(), "inject", annotations)
    answer = served.admit(review(obj, uid="u-" + tool))["response"]
    assert answer["uid"] == "u-" + tool
    assert answer["allowed"] is True
    assert answer["patchType"] == "JSONPatch"
    ops = orjson.loads(base64.b64decode(answer["patch"]))
    assert [(op["op"], op["path"]) for op in ops] == [("add", "/spec/template/spec/initContainers")]
    container = ops[0]["value"][0]
    expected_command = ["./bin/migrate", "--up"] if tool == "command" else list(PRESETS[tool])
    expected_image = (
        "liquibase/liquibase:4.29" if tool == "liquibase" else "ghcr.io/example/api:1.0"
    )
    assert (container["name"], container["image"], container["command"]) == (
        NAME,
        expected_image,
        expected_command,
    )
    assert answer["warnings"][0].startswith(f"schemagate injected init container {NAME} ({tool})")
    result = jsonpatch.apply_patch(obj, ops)
    again = served.admit(review(result, uid="again"))["response"]
    assert again == {"uid": "again", "allowed": True}


def test_an_update_of_two_objects_near_the_api_servers_limit_is_answered(served: Served) -> None:
    """An UPDATE's review carries the object and the old object, each up to the 3 MiB the
    API server takes: together twice that, and still answered rather than refused."""

    def near_limit(value: str) -> dict[str, Any]:
        obj = labelled(deployment(), "inject", {"schemagate.dev/tool": "flyway"})
        env = [{"name": f"V{i:06d}", "value": value * 40} for i in range(40_000)]
        obj["spec"]["template"]["spec"]["containers"][0]["env"] = env
        return obj

    new, old = near_limit("n"), near_limit("o")
    doc = review(new, operation="UPDATE", old=old, uid="big-update")
    body = orjson.dumps(doc)
    assert 2 * 2.5 * 2**20 < len(body) <= 2 * API_SERVER_BODY_BYTES
    status, raw = served.request("POST", "/mutate", body)
    assert status == 200, raw[:200]
    answer = orjson.loads(raw)["response"]
    assert (answer["uid"], answer["allowed"], answer["patchType"]) == (
        "big-update",
        True,
        "JSONPatch",
    )


def test_invalid_annotations_are_denials_not_errors(served: Served) -> None:
    obj = labelled(
        deployment(),
        "inject",
        {"schemagate.dev/tool": "command", "schemagate.dev/command": '["a", {"$(rm -rf /)": 1}]'},
    )
    answer = served.admit(review(obj, uid="bad"))["response"]
    assert answer["uid"] == "bad"
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 422
    assert answer["status"]["message"].startswith("shop/api: annotation schemagate.dev/command:")


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


def _mutated_review(request: dict[str, Any], uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {**request, "uid": uid},
    }


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        JSON,
        st.builds(
            _mutated_review,
            st.dictionaries(
                st.sampled_from(
                    ["kind", "operation", "namespace", "object", "oldObject", "name", "dryRun"]
                ),
                JSON,
            ),
            st.text(min_size=1, max_size=10),
        ),
    )
)
def test_any_json_gets_a_review_with_its_uid_or_a_4xx(served: Served, body: Any) -> None:
    status, raw = served.request("POST", "/mutate", orjson.dumps(body))
    assert status == 200 or 400 <= status < 500, raw
    if status == 200:
        answer = orjson.loads(raw)
        assert answer["apiVersion"] == "admission.k8s.io/v1"
        assert answer["kind"] == "AdmissionReview"
        assert answer["response"]["uid"] == body["request"]["uid"]
        assert isinstance(answer["response"]["allowed"], bool)
