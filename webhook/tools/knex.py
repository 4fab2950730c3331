"""Knex: `knex_migrations (id, name, batch, migration_time)` and its lock table.

DDL: knex/knex, lib/migrations/migrate/table-creator.js (`_createMigrationTable`: id
increments, name string, batch integer, migration_time timestamp;
`_createMigrationLockTable`: index increments, is_locked integer). Names are the
migration file names; a requirement names the files that must be applied, with or
without the extension (`20260102_invoices` or `20260102_invoices.js`), as
`knex migrate:list` lists them. While `migrate:latest` runs, `is_locked` is 1.
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
    flag,
    moment,
    select,
    without_extension,
)
from webhook.versions import Recorded


def location(dialect: Dialect) -> Location:
    return Location(None, "knex_migrations")


def queries(where: Location, dialect: Dialect) -> tuple[str, ...]:
    lock = where.beside(where.table + "_lock")
    return (
        select("name, migration_time", where, dialect, "ORDER BY id"),
        select("is_locked", lock, dialect),
    )


def parse(results: Sequence[Sequence[Row]]) -> Recorded:
    return knex_history(results[0], results[1])


def knex_history(rows: Sequence[Row], locks: Sequence[Row]) -> Recorded:
    names = [str(name) for name, _ in rows]
    running = ("the knex migration lock is held",) if any(flag(r[0]) for r in locks) else ()
    return Recorded(
        True,
        without_extension(names[-1]) if names else None,
        moment(rows[-1][1]) if rows else None,
        present=frozenset({*names, *map(without_extension, names)}),
        running=running,
    )


TOOL = Tool(
    name="knex",
    command=("npx", "knex", "migrate:latest"),
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
            table="`knex_migrations`",
            recorded="every required migration name (a list with commas; the extension "
            "optional) must be applied (`at-least`), or be the last applied, named "
            "without its extension (`exact`)",
            refused="`knex_migrations_lock.is_locked` (a migration is running)",
        ),
    ),
)
