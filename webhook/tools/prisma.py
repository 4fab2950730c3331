"""Prisma Migrate: `_prisma_migrations`, present-or-absent migration names.

DDL: prisma/prisma-engines, schema-engine/connectors/sql-schema-connector/src/flavour/
postgres.rs, mysql.rs and sqlite.rs (`create_migrations_table`). `prisma migrate deploy`
inserts a row when a migration starts (finished_at NULL) and sets finished_at when it
succeeds; on failure the error goes to `logs` and finished_at stays NULL;
`prisma migrate resolve --rolled-back` sets rolled_back_at. So a migration counts as
applied when finished and not rolled back, and one started, never finished and not
rolled back is failed (Prisma refuses to go on, P3009), unless Migrate still holds its
PostgreSQL advisory lock 72707369 (postgres.rs, `acquire_lock`): then it is running.
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook.tools.base import (
    Dialect,
    Docs,
    Gate,
    History,
    Location,
    Row,
    Tool,
    iso,
    moment,
    quoted,
    select,
)
from webhook.versions import Recorded

LOCK_HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND classid = 0 AND objid = 72707369 AND objsubid = 1 "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def location(dialect: Dialect) -> Location:
    return Location(None, "_prisma_migrations")


def queries(where: Location, dialect: Dialect) -> tuple[str, ...]:
    columns = "migration_name, started_at, finished_at, rolled_back_at, logs"
    history = select(columns, where, dialect, "ORDER BY started_at")
    return (history, LOCK_HELD) if dialect == "postgresql" else (history,)


def parse(results: Sequence[Sequence[Row]]) -> Recorded:
    held = len(results) > 1 and any(int(row[0]) for row in results[1])
    return prisma_history(results[0], held)


def prisma_history(rows: Sequence[Row], locked: bool) -> Recorded:
    applied = [row for row in rows if row[2] is not None and row[3] is None]
    unfinished = [row for row in rows if row[2] is None and row[3] is None]
    problems = tuple(
        f"migration {name} started at {iso(moment(started))} and did not finish"
        + (f": {quoted(logs)}" if logs else "")
        for name, started, _, _, logs in unfinished
    )
    running = tuple(
        f"migration {name} started at {iso(moment(started))} (Prisma Migrate holds its lock)"
        for name, started, *_ in unfinished
    )
    last = applied[-1] if applied else None
    return Recorded(
        True,
        str(last[0]) if last else None,
        moment(last[2]) if last else None,
        present=frozenset(str(row[0]) for row in applied),
        problems=() if locked else problems,
        running=running if locked else (),
    )


TOOL = Tool(
    name="prisma",
    command=("npx", "prisma", "migrate", "deploy"),
    image=None,
    locks=True,
    gate=Gate(
        compare="names",
        matches=("at-least", "exact"),
        history=History(location=location, queries=queries),
        parse=parse,
        wanted="migration",
        current="",
        docs=Docs(
            table="`_prisma_migrations`",
            recorded="every required migration name (a list with commas) must be finished "
            "and not rolled back (`at-least`), or be the last one (`exact`)",
            refused="a migration started and never finished, not rolled back (its advisory "
            "lock held on PostgreSQL: a migration is running)",
        ),
    ),
)
