"""A Flyway history table in a real PostgreSQL database, written the way Flyway writes it."""

from __future__ import annotations

import datetime
import zlib
from dataclasses import dataclass
from typing import Any

import psycopg

from tests.support import ddl


@dataclass(frozen=True)
class FlywayHistory:
    """Rows of `flyway_schema_history` in the database at `dsn` (a connection per call)."""

    dsn: str

    def create(self) -> None:
        """Flyway's own DDL for PostgreSQL (tests/support/ddl.py cites the source)."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for statement in ddl.flyway("postgresql"):
                conn.execute(statement.encode())  # bytes: trusted DDL, not a LiteralString

    def record(
        self, version: str, installed_on: datetime.datetime, *, success: bool = True
    ) -> None:
        """Insert the row `flyway migrate` writes after running V<version>__*.sql."""
        description = f"migration {version}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(
                'INSERT INTO "public"."flyway_schema_history" ("installed_rank", "version",'
                ' "description", "type", "script", "checksum", "installed_by", "installed_on",'
                ' "execution_time", "success")'
                ' SELECT COALESCE(MAX("installed_rank"), 0) + 1, %s, %s, %s, %s, %s, %s, %s, %s, %s'
                ' FROM "public"."flyway_schema_history"',
                (
                    version,
                    description,
                    "SQL",
                    f"V{version}__{description.replace(' ', '_')}.sql",
                    _crc32(version),
                    "flyway",
                    installed_on.replace(tzinfo=None),
                    12,
                    success,
                ),
            )

    def delete(self, version: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(
                'DELETE FROM "public"."flyway_schema_history" WHERE "version" = %s', (version,)
            )

    def snapshot(self) -> list[tuple[Any, ...]]:
        """Every row of the history table, and every table in the database, in a stable order."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(
                'SELECT * FROM "public"."flyway_schema_history" ORDER BY "installed_rank"'
            ).fetchall()
            tables = conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables"
                " WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
            ).fetchall()
        return [*rows, ("tables", *tables)]


def _crc32(text: str) -> int:
    """Flyway's checksum: CRC-32 of the script, stored as a signed 32-bit INTEGER."""
    value = zlib.crc32(text.encode())
    return value - (1 << 32) if value >= 1 << 31 else value
