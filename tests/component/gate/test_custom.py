"""`custom`: the operator's own query over an in-house table, on every engine, read-only."""

from __future__ import annotations

import pytest

from tests.support import wording
from tests.support.gate import lookups_for, read, verdict
from tests.support.scratch import Scratch
from webhook.gate import Unreachable

pytestmark = pytest.mark.component

QUERY = "SELECT version, state FROM releases ORDER BY id"


async def test_custom_query_reads_version_and_state(scratch: Scratch) -> None:
    scratch.run(
        "CREATE TABLE releases (id INT PRIMARY KEY, version VARCHAR(20), state VARCHAR(20))",
        "INSERT INTO releases VALUES (1, '1.9', 'applied'), (2, '1.10', NULL), (3, '2', 'pending')",
    )
    found = await read(scratch.url, "custom", query=QUERY)
    assert (found.latest, found.problems, found.running) == ("1.10", (), ())
    assert verdict("custom", "1.10", found, query=QUERY) == (True, "")
    assert verdict("custom", "2", found, query=QUERY) == (
        False,
        wording.behind("shop/api", "schema orders >= 2 (custom)", "orders", "1.10"),
    )
    scratch.run("UPDATE releases SET state = 'running' WHERE id = 3")
    running = await read(scratch.url, "custom", query=QUERY)
    assert verdict("custom", "1.9", running, query=QUERY) == (
        False,
        wording.migration_running(
            "shop/api", "schema orders >= 1.9 (custom)", "orders", "version 2 is running"
        ),
    )
    scratch.run("UPDATE releases SET state = 'failed' WHERE id = 3")
    failed = await read(scratch.url, "custom", query=QUERY)
    assert failed.problems == ("version 2 is failed",)


# SQLite cannot write from a SELECT at all (and its file is opened read-only).
@pytest.mark.parametrize("scratch", ["postgresql", "mariadb"], indirect=True)
async def test_custom_query_cannot_write(
    scratch: Scratch, caplog: pytest.LogCaptureFixture
) -> None:
    scratch.run(
        "CREATE TABLE releases (version VARCHAR(20), state VARCHAR(20))",
        "INSERT INTO releases VALUES ('1', 'applied')",
    )
    # Statements that pass the SELECT check but would write or lock: the session refuses.
    writes = {
        "postgresql": "WITH gone AS (DELETE FROM releases RETURNING version, state) "
        "SELECT version, state FROM gone",
        "mysql": "SELECT version, state FROM releases FOR UPDATE",
    }
    lookups = lookups_for(scratch.url, "custom", query=writes[scratch.dialect])
    try:
        fetched = await lookups.get("orders", 0)
    finally:
        lookups.close()
    # Tenants see the kind of failure; the database's refusal is in the webhook's log.
    assert fetched.found == Unreachable("failed")
    assert "read-only" in caplog.text or "READ ONLY" in caplog.text, caplog.text
    conn = scratch.connect()
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT count(*) FROM releases")
        assert cursor.fetchone()[0] == 1
    finally:
        conn.close()
