"""Each tool's history table, created with the DDL the tool itself runs, per engine.

Sources (the statements below follow them column for column):
- flyway: flyway/flyway `getRawCreateScript` in flyway-database-postgresql
  PostgreSQLDatabase.java and flyway-mysql MySQLDatabase.java; SQLite:
  flyway-core .../database/sqlite/createMetaDataTable.sql.
- liquibase: the SQL `liquibase update-sql` prints for the changelog and lock tables
  (StandardChangeLogHistoryService, StandardLockService); on MySQL/MariaDB LOCKED is
  BIT(1) as Liquibase 3.x-4.2x create it (later releases use TINYINT(1)).
- golang-migrate: `ensureVersionTable` in database/postgres/postgres.go,
  database/mysql/mysql.go and database/sqlite3/sqlite3.go.
- atlas: the ent schema cmd/atlas/internal/migrate/ent/migrate/schema.go as ent renders
  it for each dialect.
- alembic: not here; tests run real Alembic migrations
  (tests/component/gate/test_alembic.py).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def _q(dialect: str, *names: str | None) -> str:
    quote = "`" if dialect == "mysql" else '"'
    return ".".join(f"{quote}{name}{quote}" for name in names if name)


def flyway(
    dialect: str, schema: str | None = None, table: str = "flyway_schema_history"
) -> list[str]:
    t = _q(dialect, schema, table)
    if dialect == "postgresql":
        return [
            f'CREATE TABLE {t} ("installed_rank" INT NOT NULL, "version" VARCHAR(50), '
            '"description" VARCHAR(200) NOT NULL, "type" VARCHAR(20) NOT NULL, '
            '"script" VARCHAR(1000) NOT NULL, "checksum" INTEGER, '
            '"installed_by" VARCHAR(100) NOT NULL, '
            '"installed_on" TIMESTAMP NOT NULL DEFAULT now(), '
            '"execution_time" INTEGER NOT NULL, "success" BOOLEAN NOT NULL)',
            f'ALTER TABLE {t} ADD CONSTRAINT "{table}_pk" PRIMARY KEY ("installed_rank")',
            f'CREATE INDEX "{table}_s_idx" ON {t} ("success")',
        ]
    if dialect == "mysql":
        return [
            f"CREATE TABLE {t} (`installed_rank` INT NOT NULL, `version` VARCHAR(50), "
            "`description` VARCHAR(200) NOT NULL, `type` VARCHAR(20) NOT NULL, "
            "`script` VARCHAR(1000) NOT NULL, `checksum` INT, "
            "`installed_by` VARCHAR(100) NOT NULL, "
            "`installed_on` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, "
            "`execution_time` INT NOT NULL, `success` BOOL NOT NULL, "
            f"CONSTRAINT `{table}_pk` PRIMARY KEY (`installed_rank`)) ENGINE=InnoDB",
            f"CREATE INDEX `{table}_s_idx` ON {t} (`success`)",
        ]
    return [
        f'CREATE TABLE "main".{t} ("installed_rank" INT NOT NULL PRIMARY KEY, '
        '"version" VARCHAR(50), "description" VARCHAR(200) NOT NULL, '
        '"type" VARCHAR(20) NOT NULL, "script" VARCHAR(1000) NOT NULL, "checksum" INT, '
        '"installed_by" VARCHAR(100) NOT NULL, '
        "\"installed_on\" TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f','now')), "
        '"execution_time" INT NOT NULL, "success" BOOLEAN NOT NULL)',
        f'CREATE INDEX "main"."{table}_s_idx" ON {t} ("success")',
    ]


def flyway_row(
    rank: int,
    version: str | None,
    description: str,
    *,
    success: bool = True,
    kind: str = "SQL",
    on: str = "2026-11-20 10:00:00",
) -> str:
    script = f"V{version}__{description.replace(' ', '_')}.sql" if version else "R__x.sql"
    value = "NULL" if version is None else f"'{version}'"
    return (
        "INSERT INTO flyway_schema_history (installed_rank, version, description, type, "
        "script, checksum, installed_by, installed_on, execution_time, success) VALUES "
        f"({rank}, {value}, '{description}', '{kind}', '{script}', 1, 'ci', '{on}', 12, "
        f"{'TRUE' if success else 'FALSE'})"
    )


def flyway_sqlite(path: Path, *versions: str) -> None:
    """Append applied `versions` to the Flyway history in the SQLite file at `path`,
    creating the table (as Flyway does) when it is not there yet."""
    conn = sqlite3.connect(path, isolation_level=None)
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'flyway_schema_history'")
    if exists.fetchone() is None:
        for sql in flyway("sqlite"):
            conn.execute(sql)
    start = conn.execute("SELECT count(*) FROM flyway_schema_history").fetchone()[0]
    for rank, version in enumerate(versions, start + 1):
        conn.execute(flyway_row(rank, version, f"step {version}"))
    conn.close()


def liquibase(dialect: str) -> list[str]:
    if dialect == "postgresql":
        timestamp, boolean, integer, lock, log = (
            "TIMESTAMP WITHOUT TIME ZONE",
            "BOOLEAN",
            "INTEGER",
            "public.databasechangeloglock",
            "public.databasechangelog",
        )
    elif dialect == "mysql":
        timestamp, boolean, integer = "datetime", "BIT(1)", "INT"
        lock, log = "DATABASECHANGELOGLOCK", "DATABASECHANGELOG"
    else:
        timestamp, boolean, integer = "TEXT", "BOOLEAN", "INTEGER"
        lock, log = "DATABASECHANGELOGLOCK", "DATABASECHANGELOG"
    locked = "`LOCKED`" if dialect == "mysql" else "LOCKED"
    return [
        f"CREATE TABLE {lock} (ID {integer} NOT NULL, {locked} {boolean} NOT NULL, "
        f"LOCKGRANTED {timestamp}, LOCKEDBY VARCHAR(255), "
        "CONSTRAINT PK_DATABASECHANGELOGLOCK PRIMARY KEY (ID))",
        f"CREATE TABLE {log} (ID VARCHAR(255) NOT NULL, AUTHOR VARCHAR(255) NOT NULL, "
        f"FILENAME VARCHAR(255) NOT NULL, DATEEXECUTED {timestamp} NOT NULL, "
        f"ORDEREXECUTED {integer} NOT NULL, EXECTYPE VARCHAR(10) NOT NULL, "
        "MD5SUM VARCHAR(35), DESCRIPTION VARCHAR(255), COMMENTS VARCHAR(255), "
        "TAG VARCHAR(255), LIQUIBASE VARCHAR(20), CONTEXTS VARCHAR(255), "
        "LABELS VARCHAR(255), DEPLOYMENT_ID VARCHAR(10))",
        # Liquibase's lock service inserts the single row unlocked.
        f"INSERT INTO {lock} (ID, {locked}) VALUES (1, FALSE)",
    ]


def changeset(
    order: int,
    change_id: str,
    *,
    tag: str | None = None,
    exectype: str = "EXECUTED",
    on: str = "2026-11-20 10:00:00",
) -> str:
    value = "NULL" if tag is None else f"'{tag}'"
    return (
        "INSERT INTO DATABASECHANGELOG (ID, AUTHOR, FILENAME, DATEEXECUTED, ORDEREXECUTED, "
        "EXECTYPE, MD5SUM, DESCRIPTION, TAG, LIQUIBASE, DEPLOYMENT_ID) VALUES "
        f"('{change_id}', 'dev', 'db/changelog.xml', '{on}', {order}, '{exectype}', "
        f"'9:0f', 'createTable', {value}, '4.29.2', '2040000000')"
    )


def golang_migrate(dialect: str) -> list[str]:
    if dialect == "sqlite":
        return [
            "CREATE TABLE IF NOT EXISTS schema_migrations (version uint64,dirty bool)",
            "CREATE UNIQUE INDEX IF NOT EXISTS version_unique ON schema_migrations (version)",
        ]
    return [
        f"CREATE TABLE IF NOT EXISTS {_q(dialect, 'schema_migrations')} "
        "(version bigint not null primary key, dirty boolean not null)"
    ]


def atlas(dialect: str, schema: str | None) -> list[str]:
    t = _q(dialect, schema, "atlas_schema_revisions")
    if dialect == "postgresql":
        return [
            f'CREATE SCHEMA IF NOT EXISTS "{schema}"',
            f'CREATE TABLE {t} ("version" character varying NOT NULL, '
            '"description" character varying NOT NULL, "type" bigint NOT NULL DEFAULT 2, '
            '"applied" bigint NOT NULL DEFAULT 0, "total" bigint NOT NULL DEFAULT 0, '
            '"executed_at" timestamptz NOT NULL, "execution_time" bigint NOT NULL, '
            '"error" text NULL, "error_stmt" text NULL, "hash" character varying NOT NULL, '
            '"partial_hashes" jsonb NULL, "operator_version" character varying NOT NULL, '
            'PRIMARY KEY ("version"))',
        ]
    if dialect == "mysql":
        return [
            f"CREATE DATABASE IF NOT EXISTS `{schema}`",
            f"CREATE TABLE {t} (`version` varchar(255) NOT NULL, "
            "`description` varchar(255) NOT NULL, `type` bigint unsigned NOT NULL DEFAULT 2, "
            "`applied` bigint NOT NULL DEFAULT 0, `total` bigint NOT NULL DEFAULT 0, "
            "`executed_at` timestamp NOT NULL, `execution_time` bigint NOT NULL, "
            "`error` longtext NULL, `error_stmt` longtext NULL, `hash` varchar(255) NOT NULL, "
            "`partial_hashes` json NULL, `operator_version` varchar(255) NOT NULL, "
            "PRIMARY KEY (`version`)) CHARSET utf8mb4 COLLATE utf8mb4_bin",
        ]
    return [
        f"CREATE TABLE {t} (`version` text NOT NULL, `description` text NOT NULL, "
        "`type` integer NOT NULL DEFAULT 2, `applied` integer NOT NULL DEFAULT 0, "
        "`total` integer NOT NULL DEFAULT 0, `executed_at` datetime NOT NULL, "
        "`execution_time` integer NOT NULL, `error` text NULL, `error_stmt` text NULL, "
        "`hash` text NOT NULL, `partial_hashes` json NULL, `operator_version` text NOT NULL, "
        "PRIMARY KEY (`version`))"
    ]


def revision(
    dialect: str,
    schema: str | None,
    version: str,
    *,
    kind: int = 2,
    applied: int = 1,
    total: int = 1,
    error: str | None = None,
    on: str = "2026-11-20 10:00:00",
) -> str:
    value = "NULL" if error is None else f"'{error}'"
    return (
        f"INSERT INTO {_q(dialect, schema, 'atlas_schema_revisions')} (version, description, "
        "type, applied, total, executed_at, execution_time, error, hash, operator_version) "
        f"VALUES ('{version}', 'step', {kind}, {applied}, {total}, '{on}', 1000, {value}, "
        "'h1', 'Atlas CLI v0.28.0')"
    )
