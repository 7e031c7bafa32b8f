"""delivery: per-app send rate limit (app.send_rate_per_s) and its token buckets

Revision ID: 0003_delivery
Revises: 0002_registry
Create Date: 2026-11-22 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tidings.store.types

revision: str = "0003_delivery"
down_revision: str | Sequence[str] | None = "0002_registry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("app", sa.Column("send_rate_per_s", sa.Float(), nullable=True))
    op.create_table(
        "send_rate_bucket",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("refilled_at", tidings.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["app.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("app_id"),
    )


def downgrade() -> None:
    op.drop_table("send_rate_bucket")
    with op.batch_alter_table("app") as batch:
        batch.drop_column("send_rate_per_s")
