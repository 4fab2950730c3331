"""Tools no registry ships here (Rails, goose, EF Core; and Prisma, whose npm package
downloads its schema engine from outside the registry at install): their history tables
built with the DDL and the rows each tool's own source writes, on every engine, read by
the gate.

Sources:
- rails: rails/rails activerecord/lib/active_record/schema_migration.rb at 063db854,
  lines 43-49 (`create_table`: `t.string :version` as the primary key, `id: false`)
  and line 16 (`create_version` inserts the version); Active Record renders the string
  type as `character varying` (PostgreSQL), `varchar(255)` (MySQL), `varchar` (SQLite).
- goose: pressly/goose internal/dialect/dialectquery/postgres.go, mysql.go and
  sqlite3.go at 04013ca3, lines 9-17 (`CreateTable`), 19-21 (`InsertVersion`) and 34
  (`ListMigrations`, newest id first); goose inserts (0, true) when it creates the table.
- ef-core: dotnet/efcore src/EFCore.Relational/Migrations/HistoryRepository.cs at
  089f0a6e, line 35 (`DefaultTableName`), `ConfigureTable` (MigrationId max 150, the key;
  ProductVersion max 32, required) and `GetInsertScript`, as the Npgsql, Pomelo MySQL and
  SQLite providers render them.
- prisma: prisma/prisma-engines schema-engine/connectors/sql-schema-connector/src/flavour/
  postgres.rs, mysql.rs, sqlite.rs (`create_migrations_table`, and `acquire_lock`:
  `pg_advisory_lock(72707369)`), and sql_migration_persistence.rs for the rows
  (`record_migration_started`, `record_successful_step`, `record_migration_finished`,
  `record_failed_step`, `mark_migration_rolled_back_by_id`).
"""

from __future__ import annotations

import uuid

import pytest

from tests.support import wording
from tests.support.gate import read, verdict
from tests.support.scratch import Scratch

pytestmark = pytest.mark.component

ON, ON2 = "2026-11-20 10:00:00", "2026-11-21 10:00:00"
RAILS = {
    "postgresql": 'CREATE TABLE "schema_migrations" ("version" character varying NOT NULL '
    "PRIMARY KEY)",
    "mysql": "CREATE TABLE `schema_migrations` (`version` varchar(255) NOT NULL PRIMARY KEY)",
    "sqlite": 'CREATE TABLE "schema_migrations" ("version" varchar NOT NULL PRIMARY KEY)',
}
GOOSE = {
    "postgresql": "CREATE TABLE goose_db_version (id serial NOT NULL, version_id bigint NOT NULL, "
    "is_applied boolean NOT NULL, tstamp timestamp NULL default now(), PRIMARY KEY(id))",
    "mysql": "CREATE TABLE goose_db_version (id serial NOT NULL, version_id bigint NOT NULL, "
    "is_applied boolean NOT NULL, tstamp timestamp NULL default now(), PRIMARY KEY(id))",
    "sqlite": "CREATE TABLE goose_db_version (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "version_id INTEGER NOT NULL, is_applied INTEGER NOT NULL, "
    "tstamp TIMESTAMP DEFAULT (datetime('now')))",
}
EF_CORE = {
    "postgresql": 'CREATE TABLE "__EFMigrationsHistory" ("MigrationId" character varying(150) '
    'NOT NULL, "ProductVersion" character varying(32) NOT NULL, '
    'CONSTRAINT "PK___EFMigrationsHistory" PRIMARY KEY ("MigrationId"))',
    "mysql": "CREATE TABLE `__EFMigrationsHistory` (`MigrationId` varchar(150) CHARACTER SET "
    "utf8mb4 NOT NULL, `ProductVersion` varchar(32) CHARACTER SET utf8mb4 NOT NULL, "
    "CONSTRAINT `PK___EFMigrationsHistory` PRIMARY KEY (`MigrationId`)) CHARACTER SET=utf8mb4",
    "sqlite": 'CREATE TABLE "__EFMigrationsHistory" ("MigrationId" TEXT NOT NULL CONSTRAINT '
    '"PK___EFMigrationsHistory" PRIMARY KEY, "ProductVersion" TEXT NOT NULL)',
}


async def test_rails_highest_version_as_rails_db_version(scratch: Scratch) -> None:
    scratch.run(RAILS[scratch.dialect])
    empty = await read(scratch.url, "rails")
    assert (empty.table_present, empty.latest) == (True, None)
    # `rails db:migrate` inserts each version as it applies it, in any order of arrival.
    for version in ("20260101000000", "20260110000000", "20260105000000"):
        scratch.run(f"INSERT INTO schema_migrations (version) VALUES ('{version}')")
    found = await read(scratch.url, "rails")
    assert found.latest == "20260110000000"
    assert verdict("rails", "20260105000000", found) == (True, "")
    assert verdict("rails", "20260111000000", found) == (
        False,
        wording.behind(
            "shop/api", "schema orders >= 20260111000000 (rails)", "orders", "20260110000000"
        ),
    )
    # `rails db:rollback` deletes the version (schema_migration.rb `delete_version`).
    scratch.run("DELETE FROM schema_migrations WHERE version = '20260110000000'")
    assert (await read(scratch.url, "rails")).latest == "20260105000000"


async def test_goose_rows_toggle_as_goose_version_reads_them(scratch: Scratch) -> None:
    scratch.run(GOOSE[scratch.dialect])

    def insert(version: int, applied: bool) -> None:
        flag = ("1" if applied else "0") if scratch.dialect == "sqlite" else str(applied).upper()
        scratch.run(
            f"INSERT INTO goose_db_version (version_id, is_applied) VALUES ({version}, {flag})"
        )

    insert(0, True)  # written with the table: nothing applied yet
    assert (await read(scratch.url, "goose")).latest is None
    insert(1, True)
    insert(2, True)
    middle = await read(scratch.url, "goose")
    assert middle.latest == "2"
    assert middle.applied_at is not None
    insert(3, True)
    assert (await read(scratch.url, "goose")).latest == "3"
    # `goose down` in releases that record it: version 3 toggles off, 2 is current again.
    insert(3, False)
    found = await read(scratch.url, "goose")
    assert found.latest == "2"
    assert verdict("goose", "3", found)[1].startswith(
        "shop/api needs schema orders >= 3 (goose); orders records 2 (applied "
    )
    assert verdict("goose", "2", found, "exact") == (True, "")


async def test_ef_core_migration_ids_and_names(scratch: Scratch) -> None:
    scratch.run(EF_CORE[scratch.dialect])
    table = "`__EFMigrationsHistory`" if scratch.dialect == "mysql" else '"__EFMigrationsHistory"'
    columns = (
        "(`MigrationId`, `ProductVersion`)"
        if scratch.dialect == "mysql"
        else ('("MigrationId", "ProductVersion")')
    )
    for mid in ("20260101120000_InitialCreate", "20260102120000_AddInvoices"):
        scratch.run(f"INSERT INTO {table} {columns} VALUES ('{mid}', '8.0.11')")
    found = await read(scratch.url, "ef-core")
    assert found.latest == "20260102120000_AddInvoices"
    assert verdict("ef-core", "AddInvoices", found) == (True, "")
    assert verdict("ef-core", "20260101120000_InitialCreate", found) == (True, "")
    assert verdict("ef-core", "20260102120000_AddInvoices", found, "exact") == (True, "")
    assert verdict("ef-core", "AddRefunds", found) == (
        False,
        wording.behind(
            "shop/api",
            "migration AddRefunds in orders (ef-core)",
            "orders",
            "20260102120000_AddInvoices",
        ),
    )


PRISMA = {
    "postgresql": "CREATE TABLE _prisma_migrations (id VARCHAR(36) PRIMARY KEY NOT NULL, "
    "checksum VARCHAR(64) NOT NULL, finished_at TIMESTAMPTZ, migration_name VARCHAR(255) "
    "NOT NULL, logs TEXT, rolled_back_at TIMESTAMPTZ, started_at TIMESTAMPTZ NOT NULL "
    "DEFAULT now(), applied_steps_count INTEGER NOT NULL DEFAULT 0)",
    "mysql": "CREATE TABLE _prisma_migrations (id VARCHAR(36) PRIMARY KEY NOT NULL, "
    "checksum VARCHAR(64) NOT NULL, finished_at DATETIME(3), migration_name VARCHAR(255) "
    "NOT NULL, logs TEXT, rolled_back_at DATETIME(3), started_at DATETIME(3) NOT NULL "
    "DEFAULT CURRENT_TIMESTAMP(3), applied_steps_count INTEGER UNSIGNED NOT NULL DEFAULT 0) "
    "DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
    "sqlite": 'CREATE TABLE "_prisma_migrations" ("id" TEXT PRIMARY KEY NOT NULL, '
    '"checksum" TEXT NOT NULL, "finished_at" DATETIME, "migration_name" TEXT NOT NULL, '
    '"logs" TEXT, "rolled_back_at" DATETIME, "started_at" DATETIME NOT NULL DEFAULT '
    'current_timestamp, "applied_steps_count" INTEGER UNSIGNED NOT NULL DEFAULT 0)',
}


def prisma_started(scratch: Scratch, name: str, at: str) -> str:
    row_id = str(uuid.uuid4())
    scratch.run(
        "INSERT INTO _prisma_migrations (id, checksum, started_at, migration_name, "
        f"applied_steps_count) VALUES ('{row_id}', 'c0ffee', '{at}', '{name}', 0)"
    )
    return row_id


def prisma_finished(scratch: Scratch, row_id: str, at: str) -> None:
    scratch.run(
        "UPDATE _prisma_migrations SET applied_steps_count = applied_steps_count + 1, "
        f"finished_at = '{at}' WHERE id = '{row_id}'"
    )


async def test_prisma_finished_failed_rolled_back_and_locked(scratch: Scratch) -> None:
    scratch.run(PRISMA[scratch.dialect])
    prisma_finished(scratch, prisma_started(scratch, "20260101_init", ON), ON)
    found = await read(scratch.url, "prisma")
    assert (found.latest, found.problems) == ("20260101_init", ())
    assert verdict("prisma", "20260101_init", found, "exact") == (True, "")

    # `migrate deploy` fails: the row keeps finished_at NULL and the error in logs.
    failed = prisma_started(scratch, "20260102_invoices", ON)
    scratch.run(
        "UPDATE _prisma_migrations SET logs = 'db error: relation \"x\" already exists' "
        f"WHERE id = '{failed}'"
    )
    found = await read(scratch.url, "prisma")
    assert "20260102_invoices" not in found.present
    # TIMESTAMPTZ carries the zone; MySQL's DATETIME(3) and SQLite's text do not.
    zone = "Z" if scratch.dialect == "postgresql" else ", time zone not recorded"
    at = f"2026-11-20T10:00:00{zone}"
    assert verdict("prisma", "20260101_init", found) == (
        False,
        wording.history_problem(
            "shop/api",
            "migration 20260101_init in orders (prisma)",
            "orders",
            f"migration 20260102_invoices started at {at} and did not finish: db error: "
            'relation "x" already exists',
        ),
    )

    # `migrate resolve --rolled-back`, then a deploy that succeeds.
    scratch.run(f"UPDATE _prisma_migrations SET rolled_back_at = '{ON}' WHERE id = '{failed}'")
    prisma_finished(scratch, prisma_started(scratch, "20260102_invoices", ON2), ON2)
    found = await read(scratch.url, "prisma")
    assert (found.latest, found.problems) == ("20260102_invoices", ())
    assert verdict("prisma", "20260101_init,20260102_invoices", found) == (True, "")

    if scratch.dialect == "postgresql":
        # A deploy in progress: Migrate holds its advisory lock on its own session.
        started = prisma_started(scratch, "20260103_refunds", ON2)
        holder = scratch.connect()
        try:
            holder.execute("SELECT pg_advisory_lock(72707369)")
            found = await read(scratch.url, "prisma")
            assert (found.problems, found.running) == (
                (),
                (
                    "migration 20260103_refunds started at 2026-11-21T10:00:00Z (Prisma "
                    "Migrate holds its lock)",
                ),
            )
        finally:
            holder.close()
        prisma_finished(scratch, started, ON2)
        assert (await read(scratch.url, "prisma")).latest == "20260103_refunds"
