"""node-pg-migrate (PostgreSQL only): `pgmigrations (id, name, run_on)`, names.

DDL: salsita/node-pg-migrate, src/runner.ts (`ensureMigrationsTable`: id SERIAL primary
key, name varchar(255), run_on timestamp, zone-less). Names are the migration file names
without extension, as the tool records them; a requirement names the ones that must be
applied. While it runs, node-pg-migrate holds the advisory lock `PG_MIGRATE_LOCK_ID`
(7241865325823964, src/runner.ts), which the gate reads from `pg_locks` as a running
migration.
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook.tools.base import Dialect, Docs, Gate, History, Location, Row, Tool, moment, select
from webhook.versions import Recorded

LOCK_ID = 7241865325823964
# A bigint advisory lock shows in pg_locks as classid (high half), objid (low), subid 1.
LOCK_HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "  # noqa: S608
    f"AND classid = {LOCK_ID >> 32} AND objid = {LOCK_ID & 0xFFFFFFFF} AND objsubid = 1 "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def location(dialect: Dialect) -> Location:
    return Location(None, "pgmigrations")


def queries(where: Location, dialect: Dialect) -> tuple[str, ...]:
    history = select("name, run_on", where, dialect, "ORDER BY id")
    return (history, LOCK_HELD) if dialect == "postgresql" else (history,)


def parse(results: Sequence[Sequence[Row]]) -> Recorded:
    rows = results[0]
    held = len(results) > 1 and any(int(row[0]) for row in results[1])
    return Recorded(
        True,
        str(rows[-1][0]) if rows else None,
        moment(rows[-1][1]) if rows else None,
        present=frozenset(str(row[0]) for row in rows),
        running=("the node-pg-migrate advisory lock is held",) if held else (),
    )


TOOL = Tool(
    name="node-pg-migrate",
    command=("npx", "node-pg-migrate", "up"),
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
            table="`pgmigrations`",
            recorded="every required migration name (a list with commas) must be applied "
            "(`at-least`), or be the last applied (`exact`)",
            refused="its advisory lock held in `pg_locks` (a migration is running)",
        ),
    ),
)
