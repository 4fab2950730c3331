"""Flyway: `flyway_schema_history`, ordered versions.

DDL: flyway/flyway `getRawCreateScript` in flyway-database-postgresql/.../PostgreSQLDatabase.java
and flyway-mysql/.../MySQLDatabase.java; SQLite: .../database/sqlite/createMetaDataTable.sql.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from webhook.tools.base import Docs, Gate, Row, Tool, flag, iso, moment, one_table, rows_of, utc
from webhook.versions import Recorded, version_key

COLUMNS = "installed_rank, version, description, type, installed_on, success"


def flyway_history(rows: Sequence[Row]) -> Recorded:
    """Highest successful version; any failed row is a problem (Flyway refuses to go on)."""
    applied: dict[str, datetime | None] = {}
    failed: dict[str, str] = {}
    for rank, version, description, kind, installed_on, success in rows:
        if int(rank) < 0:
            continue  # the row lock Flyway's InsertRowLock holds (installed_rank -100)
        key = str(version if version is not None else description)
        # On SQLite the column's default is strftime(..., 'now'): UTC text. PostgreSQL's
        # `timestamp DEFAULT now()` is the Flyway session's local time: zone unknown.
        when = utc(moment(installed_on)) if isinstance(installed_on, str) else moment(installed_on)
        if kind == "DELETE":
            # `flyway repair` writes a tombstone instead of deleting the original row.
            applied.pop(key, None)
            failed.pop(key, None)
        elif not flag(success):
            label = f"{version} " if version is not None else "repeatable "
            failed[key] = f"migration {label}({description}) failed at {iso(when)}"
        elif str(kind).startswith("UNDO"):
            applied.pop(key, None)
        elif version is not None:
            applied[key] = when
    latest = max(applied, key=version_key, default=None)
    return Recorded(
        table_present=True,
        latest=latest,
        applied_at=applied[latest] if latest is not None else None,
        problems=tuple(failed.values()),
    )


TOOL = Tool(
    name="flyway",
    command=("flyway", "migrate"),
    image="flyway/flyway",
    locks=True,
    gate=Gate(
        compare="ordered",
        matches=("at-least", "exact"),
        history=one_table("flyway_schema_history", COLUMNS, "ORDER BY installed_rank"),
        parse=rows_of(flyway_history),
        wanted="",
        current="",
        docs=Docs(
            table="`flyway_schema_history`",
            recorded="highest `version` with `success`; versions compare as dotted numbers "
            "(`1.10 > 1.9`, `2 == 2.0`)",
            refused="a failed row",
        ),
    ),
)
