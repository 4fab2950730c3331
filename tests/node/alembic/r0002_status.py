"""Add orders.status."""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute("ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'new'")


def downgrade() -> None:
    op.execute("ALTER TABLE orders DROP COLUMN status")
