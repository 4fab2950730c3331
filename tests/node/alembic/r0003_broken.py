"""A release whose migration fails: the column it copies from does not exist."""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.execute("ALTER TABLE orders ADD COLUMN placed_at timestamptz")
    op.execute("UPDATE orders SET placed_at = created_at")


def downgrade() -> None:
    op.execute("ALTER TABLE orders DROP COLUMN placed_at")
