"""sql-migrate: `gorp_migrations (id, applied_at)`, ids are file names ordered by number.

DDL: rubenv/sql-migrate, migrate.go (`MigrationRecord`: Id string primary key,
AppliedAt time.Time, mapped by gorp's `CreateTablesIfNotExists`). Migrations sort by
the numeric prefix of their file name (`Migration.Less`, `VersionInt`), so the current
version is the highest numeric prefix applied: `3` for `3_add_refunds.sql`. Each
migration runs in a transaction and is recorded only when it succeeded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from webhook.tools.base import Docs, Gate, Row, Tool, moment, one_table, rows_of
from webhook.versions import Recorded

_NUMBER = re.compile(r"\d+")


def sql_migrate_history(rows: Sequence[Row]) -> Recorded:
    applied: dict[int, datetime | None] = {}
    for migration_id, applied_at in rows:
        number = _NUMBER.match(str(migration_id))
        if number is not None:
            applied[int(number.group())] = moment(applied_at)
    latest = max(applied, default=None)
    return Recorded(
        True,
        str(latest) if latest is not None else None,
        applied[latest] if latest is not None else None,
        present=frozenset(str(row[0]) for row in rows),
    )


TOOL = Tool(
    name="sql-migrate",
    command=("sql-migrate", "up"),
    image=None,
    locks=True,
    gate=Gate(
        compare="ordered",
        matches=("at-least", "exact"),
        history=one_table("gorp_migrations", "id, applied_at"),
        parse=rows_of(sql_migrate_history),
        wanted="",
        current="",
        docs=Docs(
            table="`gorp_migrations`",
            recorded="highest numeric prefix of an applied `id` (`3` for `3_add_refunds.sql`)",
            refused="nothing: sql-migrate records only what it applied",
        ),
    ),
)
