"""golang-migrate: `schema_migrations (version bigint, dirty boolean)`, one row.

DDL: golang-migrate/migrate, database/postgres/postgres.go, database/mysql/mysql.go,
database/sqlite3/sqlite3.go (`ensureVersionTable`).
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook.tools.base import Docs, Gate, Row, Tool, flag, one_table, rows_of
from webhook.versions import Recorded


def golang_migrate_history(rows: Sequence[Row]) -> Recorded:
    """A single row; version -1 (NilVersion) or no row means nothing applied."""
    if not rows:
        return Recorded(table_present=True)
    version, dirty = max(rows, key=lambda row: int(row[0]))
    latest = str(int(version)) if int(version) >= 0 else None
    problems = (f"dirty at {int(version)}",) if flag(dirty) else ()
    return Recorded(True, latest, problems=problems)


TOOL = Tool(
    name="golang-migrate",
    command=("migrate", "-path", "/migrations", "-database", "$(DATABASE_URL)", "up"),
    image="migrate/migrate",
    locks=True,
    gate=Gate(
        compare="ordered",
        matches=("at-least", "exact"),
        history=one_table("schema_migrations", "version, dirty"),
        parse=rows_of(golang_migrate_history),
        wanted="",
        current="",
        docs=Docs(
            table="`schema_migrations`",
            recorded="`version`",
            refused='`dirty = true` ("dirty at N")',
        ),
    ),
)
