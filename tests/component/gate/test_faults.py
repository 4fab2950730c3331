"""Faults on real databases: stopped, silent, locked, wrong password. The answer comes
within the lookup deadline, follows on_unreachable, shows no password, and the first
lookup after recovery reads the database again."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import ddl, wording
from tests.support.gate import lookups_for
from tests.support.scratch import Scratch
from tests.support.servers import PASSWORD, MariaDBServer, PostgresServer
from webhook.config import parse_config
from webhook.gate import Found, GateCheck, Unreachable, decide_gate
from webhook.lookup import FAILURE_TTL
from webhook.versions import Recorded

pytestmark = [pytest.mark.component, pytest.mark.faults]

DEADLINE = 1.0
# Scheduling and teardown of the abandoned read, on a loaded two-core machine.
SLACK = 0.4


async def timed_get(url: str, tool: str = "flyway") -> tuple[Found, float]:
    lookups = lookups_for(url, tool, timeout=DEADLINE)
    started = time.monotonic()
    try:
        fetched = await lookups.get("orders", 0)
    finally:
        lookups.close()
    return fetched.found, time.monotonic() - started


def answers(found: Found) -> dict[str, tuple[bool, str, tuple[str, ...]]]:
    """The gate's answer to shop/api needing orders >= 1 under each on_unreachable policy."""
    out = {}
    for policy in ("closed", "open"):
        config = parse_config(
            {
                "databases": {
                    "orders": {"url": "sqlite:///x", "tool": "flyway", "namespaces": ["shop"]}
                },
                "on_unreachable": policy,
            }
        )
        check = GateCheck("shop/api", config.databases["orders"], "1", "at-least")
        answer = decide_gate(check, found, config)
        out[policy] = (answer.allowed, answer.message or "", answer.warnings)
    return out


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
async def test_stopped_database_answers_within_the_deadline_then_recovers(
    request: pytest.FixtureRequest, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    server: PostgresServer | MariaDBServer = request.getfixturevalue(
        "postgres" if engine == "postgresql" else "mariadb"
    )
    database = f"stop_{engine}"
    server.create_database(database)
    conn = server.connect(database)
    for sql in (
        *ddl.flyway("postgresql" if engine == "postgresql" else "mysql"),
        ddl.flyway_row(1, "1", "create orders"),
    ):
        conn.cursor().execute(sql)
    conn.close()

    lookups = lookups_for(server.url(database), "flyway", timeout=DEADLINE)
    assert isinstance((await lookups.get("orders", 0)).found, Recorded)  # a pooled connection
    server.stop()
    try:
        started = time.monotonic()
        found = (await lookups.get("orders", 0)).found
        elapsed = time.monotonic() - started
    finally:
        server.start()
    assert isinstance(found, Unreachable)
    assert elapsed < DEADLINE + SLACK
    closed, opened = answers(found).values()
    assert closed == (
        False,
        wording.unreachable_closed(
            "shop/api", "schema orders >= 1 (flyway)", "orders", found.reason
        ),
        (),
    )
    assert opened == (
        True,
        "",
        (
            wording.unreachable_open(
                "shop/api", "schema orders >= 1 (flyway)", "orders", found.reason
            ),
        ),
    )
    # The failure is remembered briefly; asked for anything fresher, the lookup reads again.
    assert (await lookups.get("orders", 5)).found is found
    back = (await lookups.get("orders", FAILURE_TTL / 10)).found
    assert isinstance(back, Recorded)
    assert back.latest == "1"
    # A restart between two lookups: the kept connection is dead, the next read still works.
    server.stop()
    server.start()
    again = (await lookups.get("orders", 0)).found
    lookups.close()
    assert again == back
    assert PASSWORD not in found.reason
    assert PASSWORD not in caplog.text


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A loopback port that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
async def test_silent_server_answers_within_the_deadline(silent_port: int, scheme: str) -> None:
    found, elapsed = await timed_get(f"{scheme}://gate:pw@127.0.0.1:{silent_port}/orders")
    assert found == Unreachable("timed out")
    assert DEADLINE <= elapsed < DEADLINE + SLACK


async def test_lookup_blocked_by_a_held_lock_honours_the_deadline(scratch: Scratch) -> None:
    scratch.run(*ddl.flyway(scratch.dialect), ddl.flyway_row(1, "1", "create orders"))
    with scratch.locked("flyway_schema_history"):
        found, elapsed = await timed_get(scratch.url)
    assert isinstance(found, Unreachable)
    assert elapsed < DEADLINE + SLACK
    # SQLite's busy timeout (half the deadline) and the deadline itself are both timeouts.
    assert found.reason == "timed out"
    found, _ = await timed_get(scratch.url)
    assert isinstance(found, Recorded)
    assert found.latest == "1"


@pytest.mark.parametrize(
    ("engine", "says"),
    [
        ("postgresql", 'password authentication failed for user "postgres"'),
        ("mariadb", "Access denied for user 'gate'@'127.0.0.1' (using password: YES)"),
    ],
)
async def test_wrong_password_is_named_never_shown(
    request: pytest.FixtureRequest, engine: str, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    server: PostgresServer | MariaDBServer = request.getfixturevalue(
        "postgres" if engine == "postgresql" else "mariadb"
    )
    wrong = "Wr0ng:p@ss/word"
    found, elapsed = await timed_get(
        server.url("mysql" if engine == "mariadb" else "postgres", password=wrong)
    )
    assert found == Unreachable("authentication failed")
    assert says in caplog.text  # the driver's words, for operators only
    assert elapsed < DEADLINE
    for secret in (wrong, PASSWORD, "Wr0ng%3Ap%40ss%2Fword"):
        assert secret not in found.reason
        assert secret not in caplog.text


@pytest.mark.parametrize("engine", ["postgresql", "mariadb", "sqlite"])
async def test_a_denial_names_the_kind_of_failure_and_the_log_the_detail(
    request: pytest.FixtureRequest, engine: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Driver errors name users, databases and files of the webhook's configuration: a
    tenant's denial gets the kind only."""
    if engine == "sqlite":
        missing, detail = f"sqlite://{tmp_path}/gone.db", "unable to open database file"
        refused = None
    else:
        server: PostgresServer | MariaDBServer = request.getfixturevalue(
            "postgres" if engine == "postgresql" else "mariadb"
        )
        missing = server.url("nosuchdb")
        detail = "nosuchdb"
        with socket.socket() as hold:  # bound, not listening: connecting is refused
            hold.bind(("127.0.0.1", 0))
            port = hold.getsockname()[1]
            refused, _ = await timed_get(server.url("x").replace(f":{server.port}/", f":{port}/"))
    found, _ = await timed_get(missing)
    assert found == Unreachable("not found")
    assert detail in caplog.text
    closed = answers(found)["closed"][1]
    assert closed == wording.unreachable_closed(
        "shop/api", "schema orders >= 1 (flyway)", "orders", "not found"
    )
    if refused is not None:
        assert refused == Unreachable("connection refused")
