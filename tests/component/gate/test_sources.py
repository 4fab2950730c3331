"""Every tool's recorded states, read from the tool's own table on PostgreSQL, MariaDB and
SQLite, and the denial a person sees for each."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support import ddl, wording
from tests.support.gate import lookups_for, read, verdict
from tests.support.scratch import Scratch
from webhook.gate import Unreachable
from webhook.tools import GATE_TOOLS
from webhook.versions import Recorded

pytestmark = pytest.mark.component

NOV20 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
# How a recorded 2026-11-20 10:00:00 is shown: Flyway's PostgreSQL column has no zone
# (the Flyway session's local time); MySQL's TIMESTAMP and SQLite's default are UTC.
FLYWAY_AT = {
    "postgresql": "2026-11-20T10:00:00, time zone not recorded",
    "mysql": "2026-11-20T10:00:00Z",
    "sqlite": "2026-11-20T10:00:00Z",
}
# Liquibase's DATEEXECUTED and LOCKGRANTED have no zone on any engine (the JVM's time).
LIQUIBASE_AT = "2026-11-20T10:00:00, time zone not recorded"
ON = "2026-11-20 10:00:00"


def utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


async def test_no_table_is_no_migrations_recorded(scratch: Scratch) -> None:
    for tool in GATE_TOOLS:
        extra = {"query": "SELECT version, state FROM releases"} if tool == "custom" else {}
        found = await read(scratch.url, tool, **extra)
        assert found == Recorded(table_present=False), tool
    assert verdict("flyway", "42", Recorded(False)) == (
        False,
        wording.no_migrations("shop/api", "schema orders >= 42 (flyway)", "orders"),
    )


async def test_flyway_highest_successful_version_as_dotted_numbers(scratch: Scratch) -> None:
    scratch.run(
        *ddl.flyway(scratch.dialect),
        ddl.flyway_row(1, "1", "create orders", on="2026-11-18 09:00:00"),
        ddl.flyway_row(2, "1.9", "add status", on="2026-11-19 09:00:00"),
        ddl.flyway_row(3, "1.10", "add index"),
        ddl.flyway_row(4, None, "refresh views", on="2026-11-21 09:00:00"),
    )
    found = await read(scratch.url, "flyway")
    assert (found.latest, utc(found.applied_at), found.problems) == ("1.10", NOV20, ())
    assert verdict("flyway", "1.9", found) == (True, "")
    assert verdict("flyway", "1.10.0", found, "exact") == (True, "")
    assert verdict("flyway", "2", found) == (
        False,
        wording.behind(
            "shop/api",
            "schema orders >= 2 (flyway)",
            "orders",
            f"1.10 (applied {FLYWAY_AT[scratch.dialect]})",
        ),
    )


async def test_flyway_failed_row_is_reported(scratch: Scratch) -> None:
    scratch.run(
        *ddl.flyway(scratch.dialect),
        ddl.flyway_row(1, "2.0", "create orders", on="2026-11-19 09:00:00"),
        ddl.flyway_row(2, "3", "add index", success=False),
    )
    found = await read(scratch.url, "flyway")
    assert found.latest == "2.0"
    at = FLYWAY_AT[scratch.dialect]
    assert found.problems == (f"migration 3 (add index) failed at {at}",)
    assert verdict("flyway", "2", found) == (
        False,
        wording.history_problem(
            "shop/api",
            "schema orders >= 2 (flyway)",
            "orders",
            f"migration 3 (add index) failed at {at}",
        ),
    )


async def test_flyway_in_a_configured_schema_and_table(scratch: Scratch) -> None:
    schema = None if scratch.engine == "sqlite" else f"audit_{scratch.name}"
    if scratch.engine == "postgresql":
        scratch.run(f'CREATE SCHEMA "{schema}"')
    elif scratch.engine == "mariadb":
        scratch.run(f"CREATE DATABASE `{schema}`")
    table = ddl._q(scratch.dialect, schema, "history")
    scratch.run(
        *ddl.flyway(scratch.dialect, schema, "history"),
        ddl.flyway_row(1, "7", "seven").replace("flyway_schema_history", table),
    )
    extra = {"table": "history", **({"schema": schema} if schema else {})}
    assert (await read(scratch.url, "flyway", **extra)).latest == "7"
    assert not (await read(scratch.url, "flyway")).table_present


async def test_liquibase_tags_and_changesets_are_present(scratch: Scratch) -> None:
    scratch.run(
        *ddl.liquibase(scratch.dialect),
        ddl.changeset(1, "create-orders", on="2026-11-18 09:00:00"),
        ddl.changeset(2, "add-status", tag="v1.0"),
        ddl.changeset(3, "add-index", on="2026-11-21 09:00:00"),
        ddl.changeset(4, "seed-demo", exectype="FAILED", on="2026-11-21 09:00:01"),
    )
    found = await read(scratch.url, "liquibase")
    assert found.present == {"create-orders", "add-status", "v1.0", "add-index"}
    assert (found.latest, found.applied_at, found.problems) == (
        "v1.0",
        NOV20.replace(tzinfo=None),
        (),
    )
    assert verdict("liquibase", "add-index", found) == (True, "")
    assert verdict("liquibase", "v1.0", found, "exact") == (True, "")
    assert verdict("liquibase", "seed-demo", found) == (
        False,
        wording.behind(
            "shop/api",
            "tag or changeset seed-demo in orders (liquibase)",
            "orders",
            f"tag v1.0 (applied {LIQUIBASE_AT})",
        ),
    )


async def test_liquibase_held_lock_says_a_migration_is_running(scratch: Scratch) -> None:
    scratch.run(
        *ddl.liquibase(scratch.dialect),
        ddl.changeset(1, "create-orders", tag="v1.0"),
        "UPDATE DATABASECHANGELOGLOCK SET LOCKED = TRUE, LOCKGRANTED = '2026-11-20 10:05:00', "
        "LOCKEDBY = 'runner-7f9c (10.0.3.12)' WHERE ID = 1",
    )
    found = await read(scratch.url, "liquibase")
    # The time is the JVM's local time with no zone: shown as recorded, never as UTC.
    assert (found.problems, found.running) == (
        (),
        (
            "the liquibase lock is held by runner-7f9c (10.0.3.12) since "
            "2026-11-20T10:05:00, time zone not recorded",
        ),
    )
    assert verdict("liquibase", "v1.0", found) == (
        False,
        wording.migration_running(
            "shop/api",
            "tag or changeset v1.0 in orders (liquibase)",
            "orders",
            "the liquibase lock is held by runner-7f9c (10.0.3.12) since "
            "2026-11-20T10:05:00, time zone not recorded",
        ),
    )


@pytest.mark.parametrize(
    ("rows", "latest", "problems"),
    [
        ([], None, ()),
        (["(42, FALSE)"], "42", ()),
        (["(43, TRUE)"], "43", ("dirty at 43",)),
        (["(-1, FALSE)"], None, ()),
    ],
    ids=["empty", "clean", "dirty", "nil-version"],
)
async def test_golang_migrate_version_and_dirty_flag(
    scratch: Scratch, rows: list[str], latest: str | None, problems: tuple[str, ...]
) -> None:
    inserts = [f"INSERT INTO schema_migrations (version, dirty) VALUES {row}" for row in rows]
    scratch.run(*ddl.golang_migrate(scratch.dialect), *inserts)
    found = await read(scratch.url, "golang-migrate")
    assert (found.table_present, found.latest, found.problems) == (True, latest, problems)
    if problems:
        assert verdict("golang-migrate", "43", found)[1] == wording.history_problem(
            "shop/api", "schema orders >= 43 (golang-migrate)", "orders", "dirty at 43"
        )


async def test_atlas_highest_fully_applied_revision(scratch: Scratch) -> None:
    schema = None if scratch.engine == "sqlite" else "atlas_schema_revisions"
    if scratch.engine == "mariadb":
        scratch.run("DROP DATABASE IF EXISTS atlas_schema_revisions")
    # go-sqlite3 stores times as text with nanoseconds and an offset.
    nanos = scratch.engine == "sqlite"
    on = "2026-11-20 10:00:00.123456789+00:00" if nanos else "2026-11-20 10:00:00"
    d = scratch.dialect
    scratch.run(
        *ddl.atlas(d, schema),
        ddl.revision(d, schema, ".atlas_cloud_identifier", kind=0, applied=0, total=0),
        ddl.revision(d, schema, "20261101000000", kind=1, applied=0, total=0),
        ddl.revision(d, schema, "20261110000000", applied=3, total=3, on="2026-11-10 00:00:00"),
        ddl.revision(d, schema, "20261120100000", applied=2, total=2, on=on),
    )
    found = await read(scratch.url, "atlas")
    assert (found.latest, found.problems) == ("20261120100000", ())
    assert utc(found.applied_at) == NOV20.replace(microsecond=123456 if nanos else 0)
    assert verdict("atlas", "20261120100000", found) == (True, "")

    scratch.run(
        ddl.revision(d, schema, "20261121000000", applied=1, total=3),
        ddl.revision(
            d,
            schema,
            "20261122000000",
            applied=0,
            total=2,
            error="pq: relation orders_idx already exists",
        ),
    )
    found = await read(scratch.url, "atlas")
    # Atlas judges the last revision alone: the partial one before it is superseded.
    assert found.latest == "20261120100000"
    assert found.problems == (
        "revision 20261122000000 failed (0 of 2 statements applied): "
        "pq: relation orders_idx already exists",
    )
    assert not verdict("atlas", "20261120100000", found)[0]

    # `atlas migrate set 20261123000000` records a resolved revision: Atlas says OK again.
    scratch.run(ddl.revision(d, schema, "20261123000000", kind=4, applied=0, total=0))
    found = await read(scratch.url, "atlas")
    assert (found.latest, found.problems) == ("20261123000000", ())


async def test_atlas_current_follows_its_text_order(scratch: Scratch) -> None:
    schema = None if scratch.engine == "sqlite" else "atlas_schema_revisions"
    if scratch.engine == "mariadb":
        scratch.run("DROP DATABASE IF EXISTS atlas_schema_revisions")
    d = scratch.dialect
    scratch.run(
        *ddl.atlas(d, schema),
        # go-sqlite3 writes the offset; the servers' columns carry the zone themselves.
        *(
            ddl.revision(d, schema, v, on="2026-11-20 10:00:00+00:00" if d == "sqlite" else ON)
            for v in ("1", "2", "9", "10")
        ),
    )
    found = await read(scratch.url, "atlas")
    assert found.latest == "9"
    assert verdict("atlas", "10", found) == (
        False,
        wording.behind(
            "shop/api", "schema orders >= 10 (atlas)", "orders", "9 (applied 2026-11-20T10:00:00Z)"
        ),
    )


async def test_rows_the_tool_never_writes_are_a_failed_read_not_a_crash(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # SQLite takes any value in any column: a version golang-migrate could never write.
    path = tmp_path / "odd.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE schema_migrations (version bigint, dirty boolean);"
        "INSERT INTO schema_migrations VALUES ('v7', 0);"
    )
    conn.close()
    lookups = lookups_for(f"sqlite://{path}", "golang-migrate")
    try:
        fetched = await lookups.get("orders", 0)
    finally:
        lookups.close()
    # Tenants see the kind of failure; what was wrong is in the webhook's log.
    assert fetched.found == Unreachable("failed")
    assert (
        "its table holds rows the tool does not write (invalid literal for int() with base 10: "
        "'v7')"
    ) in caplog.text
