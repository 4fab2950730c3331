-- The local database for `make run`: Flyway's history table (Flyway's SQLite DDL)
-- with two applied migrations, so a gate on version 2 passes and on 3 is denied.
CREATE TABLE IF NOT EXISTS "flyway_schema_history" (
    "installed_rank" INT NOT NULL PRIMARY KEY,
    "version" VARCHAR(50),
    "description" VARCHAR(200) NOT NULL,
    "type" VARCHAR(20) NOT NULL,
    "script" VARCHAR(1000) NOT NULL,
    "checksum" INT,
    "installed_by" VARCHAR(100) NOT NULL,
    "installed_on" TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f','now')),
    "execution_time" INT NOT NULL,
    "success" BOOLEAN NOT NULL
);
INSERT OR IGNORE INTO "flyway_schema_history" VALUES
    (1, '1', 'create orders', 'SQL', 'V1__create_orders.sql', 1, 'dev', '2026-11-20 10:00:00.000', 12, 1),
    (2, '2', 'add status', 'SQL', 'V2__add_status.sql', 2, 'dev', '2026-11-21 10:00:00.000', 9, 1);
