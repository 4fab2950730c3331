"""Create orders.

Two knobs for the tier's measurements: MIGRATION_SECONDS makes the migration take a
while, so replicas starting together really overlap; and when the database has a
sequence `migration_runs`, every run of this migration bumps it. A rollback does not
undo `nextval`, so the sequence counts the runs that started, failed ones included.
"""

import os

from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.execute(
        "DO $$ BEGIN IF to_regclass('migration_runs') IS NOT NULL THEN "
        "PERFORM nextval('migration_runs'); END IF; END $$"
    )
    op.execute(f"SELECT pg_sleep({float(os.environ.get('MIGRATION_SECONDS', '0'))})")
    op.execute("CREATE TABLE orders (id serial PRIMARY KEY, total numeric NOT NULL)")


def downgrade() -> None:
    op.execute("DROP TABLE orders")
