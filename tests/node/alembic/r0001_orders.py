"""Create orders, on PostgreSQL or MariaDB.

Two knobs for the tier's measurements: MIGRATION_SECONDS makes the migration take a
while, so replicas starting together really overlap; and when the database has a
counter of runs, every run of this migration bumps it: on PostgreSQL the sequence
`migration_runs` (a rollback does not undo `nextval`), on MariaDB an insert into the
AUTO_INCREMENT table `migration_runs` (MariaDB's DDL commits it at once; an
AUTO_INCREMENT value is never handed out twice either). Either way the counter counts
the runs that started, failed ones included.
"""

import os

from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    seconds = float(os.environ.get("MIGRATION_SECONDS", "0"))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DO $$ BEGIN IF to_regclass('migration_runs') IS NOT NULL THEN "
            "PERFORM nextval('migration_runs'); END IF; END $$"
        )
        op.execute(f"SELECT pg_sleep({seconds})")
        op.execute("CREATE TABLE orders (id serial PRIMARY KEY, total numeric NOT NULL)")
        return
    if op.get_bind().exec_driver_sql("SHOW TABLES LIKE 'migration_runs'").first():
        op.execute("INSERT INTO migration_runs () VALUES ()")
    op.execute(f"DO SLEEP({seconds})")
    op.execute("CREATE TABLE orders (id serial PRIMARY KEY, total numeric(12, 2) NOT NULL)")


def downgrade() -> None:
    op.execute("DROP TABLE orders")
