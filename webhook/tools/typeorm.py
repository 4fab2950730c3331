"""TypeORM: `migrations (id, timestamp, name)`, present-or-absent migration names.

DDL: typeorm/typeorm, src/migration/MigrationExecutor.ts (`createMigrationsTableIfNotExist`:
id, timestamp bigint, name varchar). A name is the migration class's name, ending in its
timestamp (`CreateOrders1767225600000`); TypeORM runs them in timestamp order, so the
current one is the name with the highest timestamp, as `typeorm migration:show` lists
them. Migrations run in one transaction by default; a failed one is not recorded.
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook.tools.base import Docs, Gate, Row, Tool, one_table, rows_of
from webhook.versions import Recorded


def typeorm_history(rows: Sequence[Row]) -> Recorded:
    ordered = sorted(rows, key=lambda row: int(row[0]))
    return Recorded(
        True,
        str(ordered[-1][1]) if ordered else None,
        present=frozenset(str(row[1]) for row in ordered),
    )


TOOL = Tool(
    name="typeorm",
    command=("npx", "typeorm", "migration:run", "-d", "dist/data-source.js"),
    image=None,
    locks=False,
    gate=Gate(
        compare="names",
        matches=("at-least", "exact"),
        history=one_table("migrations", "timestamp, name"),
        parse=rows_of(typeorm_history),
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
