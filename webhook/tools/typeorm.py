"""TypeORM: `migrations (id, timestamp, name)`, present-or-absent migration names.

DDL: typeorm/typeorm, src/migration/MigrationExecutor.ts (`createMigrationsTableIfNotExist`:
id, timestamp bigint, name varchar). A name is the migration class's name, ending in its
timestamp (`CreateOrders1767225600000`); TypeORM runs them in timestamp order, so the
current one is the name with the highest timestamp, as `typeorm migration:show` lists
them. Migrations run in one transaction by default; a failed one is not recorded.
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook.tools.base import Dialect, Docs, Gate, History, Location, Row, Tool, select
from webhook.versions import Recorded


def location(dialect: Dialect) -> Location:
    return Location(None, "migrations")


def queries(where: Location, dialect: Dialect) -> tuple[str, ...]:
    return (select("timestamp, name", where, dialect),)


def parse(results: Sequence[Sequence[Row]]) -> Recorded:
    rows = sorted(results[0], key=lambda row: int(row[0]))
    return Recorded(
        True,
        str(rows[-1][1]) if rows else None,
        present=frozenset(str(row[1]) for row in rows),
    )


TOOL = Tool(
    name="typeorm",
    command=("npx", "typeorm", "migration:run", "-d", "dist/data-source.js"),
    image=None,
    locks=False,
    gate=Gate(
        compare="names",
        matches=("at-least", "exact"),
        history=History(location=location, queries=queries),
        parse=parse,
        wanted="migration",
        current="",
        docs=Docs(
            table="`migrations`",
            recorded="every required migration name (a list with commas) must be applied "
            "(`at-least`), or be the one with the highest timestamp (`exact`)",
            refused="nothing: TypeORM records only what it applied",
        ),
    ),
)
