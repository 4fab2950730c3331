"""What each migration tool recorded, read from the tool's own table as the tool wrote it.

The queries select only columns every current release of the tool writes, and the rows
are interpreted here rather than in SQL, so one query text serves PostgreSQL, MySQL,
MariaDB and SQLite alike (booleans arrive as bool, 0/1 or BIT bytes; times as datetime
or text). The tables read, and where their DDL lives upstream:

- flyway `flyway_schema_history`: flyway/flyway, `getRawCreateScript` in
  flyway-database-postgresql/.../PostgreSQLDatabase.java and
  flyway-mysql/.../MySQLDatabase.java; SQLite: .../database/sqlite/createMetaDataTable.sql.
- liquibase `DATABASECHANGELOG` and `DATABASECHANGELOGLOCK`: liquibase/liquibase,
  `StandardChangeLogHistoryService` and `StandardLockService` (PostgreSQL folds the
  unquoted names to lower case; MySQL keeps them upper case).
- alembic `alembic_version (version_num VARCHAR(32) PRIMARY KEY)`: sqlalchemy/alembic,
  alembic/runtime/migration.py (`_version` table).
- golang-migrate `schema_migrations (version bigint, dirty boolean)`: golang-migrate/migrate,
  database/postgres/postgres.go, database/mysql/mysql.go, database/sqlite3/sqlite3.go
  (`ensureVersionTable`).
- atlas `atlas_schema_revisions`: ariga/atlas, cmd/atlas/internal/migrate/ent/schema/
  revision.go; kept in the schema `atlas_schema_revisions` unless the migration URL is
  bound to a schema (then configure `schema`), in `main` on SQLite.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from webhook.sources.engines import Engine, Row
from webhook.sources.errors import TableMissing
from webhook.sources.target import Dialect
from webhook.versions import Recorded, version_key

# Liquibase EXECTYPEs that leave a changeset applied (FAILED and SKIPPED do not).
LIQUIBASE_APPLIED = frozenset(("EXECUTED", "RERAN", "MARK_RAN"))
# Atlas RevisionType bits (ariga/atlas sql/migrate/migrate.go): baseline 1, execute 2,
# resolved 4. Baseline and resolved ("migrate set") revisions count as applied.
ATLAS_BASELINE, ATLAS_RESOLVED = 1, 4
# Errors quoted from a tool's table are cut here so a denial stays readable.
MAX_QUOTED = 200


@dataclass(frozen=True)
class Location:
    """The tool's table, and the schema it lives in (None: the connection's default)."""

    schema: str | None
    table: str

    def sql(self, dialect: Dialect) -> str:
        quote = "`" if dialect == "mysql" else '"'
        names = (self.schema, self.table) if self.schema else (self.table,)
        return ".".join(quote + name.replace(quote, quote * 2) + quote for name in names)


def default_location(tool: str, dialect: Dialect) -> Location:
    if tool == "flyway":
        return Location(None, "flyway_schema_history")
    if tool == "liquibase":
        # Liquibase leaves the names unquoted, so PostgreSQL stores them in lower case.
        name = "databasechangelog" if dialect == "postgresql" else "DATABASECHANGELOG"
        return Location(None, name)
    if tool == "alembic":
        return Location(None, "alembic_version")
    if tool == "golang-migrate":
        return Location(None, "schema_migrations")
    if tool == "atlas":
        schema = None if dialect == "sqlite" else "atlas_schema_revisions"
        return Location(schema, "atlas_schema_revisions")
    raise ValueError(f"unknown tool {tool!r}")


async def read(tool: str, engine: Engine, where: Location) -> Recorded:
    """Read what `tool` recorded at `where`. Engine errors propagate as SourceError."""
    return await READERS[tool](engine, where)


async def _select(
    engine: Engine, columns: str, where: Location, tail: str = ""
) -> list[Row] | None:
    """The rows of one fixed query on the tool's table, or None when the table does not exist."""
    # Only identifiers are interpolated: fixed column lists, and schema/table names that
    # the config restricts to letters, digits, _ and $ and that are quoted here besides.
    sql = f"SELECT {columns} FROM {where.sql(engine.dialect)} {tail}"  # noqa: S608
    try:
        return await engine.query(sql.strip())
    except TableMissing:
        return None


async def _flyway(engine: Engine, where: Location) -> Recorded:
    columns = "installed_rank, version, description, type, installed_on, success"
    rows = await _select(engine, columns, where, "ORDER BY installed_rank")
    return Recorded(table_present=False) if rows is None else flyway_history(rows)


def flyway_history(rows: Sequence[Row]) -> Recorded:
    """Highest successful version; any failed row is a problem (Flyway refuses to go on)."""
    applied: dict[str, datetime | None] = {}
    failed: dict[str, str] = {}
    for rank, version, description, kind, installed_on, success in rows:
        if int(rank) < 0:
            continue  # the row lock Flyway's InsertRowLock holds (installed_rank -100)
        key = str(version if version is not None else description)
        if kind == "DELETE":
            # `flyway repair` writes a tombstone instead of deleting the original row.
            applied.pop(key, None)
            failed.pop(key, None)
        elif not flag(success):
            label = f"{version} " if version is not None else "repeatable "
            failed[key] = f"migration {label}({description}) failed at {iso(moment(installed_on))}"
        elif str(kind).startswith("UNDO"):
            applied.pop(key, None)
        elif version is not None:
            applied[key] = moment(installed_on)
    latest = max(applied, key=version_key, default=None)
    return Recorded(
        table_present=True,
        latest=latest,
        applied_at=applied[latest] if latest is not None else None,
        problems=tuple(failed.values()),
    )


async def _liquibase(engine: Engine, where: Location) -> Recorded:
    columns, order = "ID, TAG, DATEEXECUTED, EXECTYPE", "ORDER BY DATEEXECUTED, ORDEREXECUTED"
    changes = await _select(engine, columns, where, order)
    if changes is None:
        return Recorded(table_present=False)
    suffix = "lock" if where.table.islower() else "LOCK"
    lock_table = Location(where.schema, where.table + suffix)
    locks = await _select(engine, "LOCKED, LOCKGRANTED, LOCKEDBY", lock_table)
    return liquibase_history(changes, locks or [])


def liquibase_history(changes: Sequence[Row], locks: Sequence[Row]) -> Recorded:
    """Every applied changeset ID and tag is present; `latest` is the last tag."""
    present: set[str] = set()
    latest: str | None = None
    applied_at: datetime | None = None
    for change_id, tag, executed, exectype in changes:
        if str(exectype).upper() in LIQUIBASE_APPLIED:
            present.add(str(change_id))
        if tag:
            present.add(str(tag))
            latest, applied_at = str(tag), moment(executed)
    problems = tuple(
        f"the liquibase lock is held by {by or 'an unknown client'} since {iso(moment(granted))}"
        for locked, granted, by in locks
        if flag(locked)
    )
    return Recorded(True, latest, applied_at, frozenset(present), problems=problems)


async def _alembic(engine: Engine, where: Location) -> Recorded:
    rows = await _select(engine, "version_num", where)
    return Recorded(table_present=False) if rows is None else alembic_history(rows)


def alembic_history(rows: Sequence[Row]) -> Recorded:
    """One row per head; Alembic records no time."""
    heads = tuple(sorted(str(row[0]) for row in rows))
    problems = (f"more than one head: {', '.join(heads)}",) if len(heads) > 1 else ()
    latest = heads[0] if len(heads) == 1 else None
    return Recorded(True, latest, present=frozenset(heads), heads=heads, problems=problems)


async def _golang_migrate(engine: Engine, where: Location) -> Recorded:
    rows = await _select(engine, "version, dirty", where)
    return Recorded(table_present=False) if rows is None else golang_migrate_history(rows)


def golang_migrate_history(rows: Sequence[Row]) -> Recorded:
    """A single row; version -1 (NilVersion) or no row means nothing applied."""
    if not rows:
        return Recorded(table_present=True)
    version, dirty = max(rows, key=lambda row: int(row[0]))
    latest = str(int(version)) if int(version) >= 0 else None
    problems = (f"dirty at {int(version)}",) if flag(dirty) else ()
    return Recorded(True, latest, problems=problems)


async def _atlas(engine: Engine, where: Location) -> Recorded:
    columns = "version, type, applied, total, executed_at, error"
    # Dot-prefixed versions (.atlas_cloud_identifier) are bookkeeping, not revisions.
    rows = await _select(engine, columns, where, "WHERE version NOT LIKE '.%'")
    return Recorded(table_present=False) if rows is None else atlas_history(rows)


def atlas_history(rows: Sequence[Row]) -> Recorded:
    """Highest fully applied revision; a partial or errored one is a problem."""
    done: dict[str, datetime | None] = {}
    problems: list[str] = []
    for version, kind, applied, total, executed_at, error in rows:
        counted = f"{applied} of {total} statements applied"
        if int(kind) & (ATLAS_BASELINE | ATLAS_RESOLVED) or (not error and applied >= total):
            done[str(version)] = moment(executed_at)
        elif error:
            quoted = " ".join(str(error).split())[:MAX_QUOTED]
            problems.append(f"revision {version} failed ({counted}): {quoted}")
        else:
            problems.append(f"revision {version} is partially applied ({counted})")
    latest = max(done, key=version_key, default=None)
    return Recorded(
        table_present=True,
        latest=latest,
        applied_at=done[latest] if latest is not None else None,
        problems=tuple(sorted(problems)),
    )


READERS: dict[str, Callable[[Engine, Location], Awaitable[Recorded]]] = {
    "flyway": _flyway,
    "liquibase": _liquibase,
    "alembic": _alembic,
    "golang-migrate": _golang_migrate,
    "atlas": _atlas,
}


def flag(value: Any) -> bool:
    """A boolean column as any engine returns it: bool, 0/1, b'\\x01' (BIT(1)) or text."""
    if isinstance(value, bytes | bytearray):
        return int.from_bytes(value, "big") != 0
    if isinstance(value, str):
        return value.strip().lower() in ("1", "t", "true", "y", "yes")
    return bool(value)


def moment(value: Any) -> datetime | None:
    """A timestamp column as datetime; text (SQLite) is parsed, naive values mean UTC."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace(" ", "T", 1).replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        # Go and SQLite write up to nanoseconds; Python parses at most microseconds.
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def iso(value: datetime | None) -> str:
    if value is None:
        return "an unrecorded time"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
