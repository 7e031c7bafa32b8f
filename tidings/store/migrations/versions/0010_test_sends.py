"""test sends: one push node sent to chosen devices outside any run

- ``test_send``: who asked, the journey, version and node, the profile it was rendered for,
  the rendered push, and each device's outcome. Apart from the send ledger, so reports,
  funnels and frequency caps never count test sends.

Revision ID: 0010_test_sends
Revises: 0009_schedules
Create Date: 2026-12-05 05:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tidings.store.types

revision: str = "0010_test_sends"
down_revision: str | Sequence[str] | None = "0009_schedules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _utc() -> tidings.store.types.UTCDateTime:
    return tidings.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "test_send",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("journey_id", sa.String(length=64), nullable=False),
        sa.Column("journey_version", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("profile_id", sa.String(length=128), nullable=False),
        sa.Column("message", JSON, nullable=False),
        sa.Column("devices", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("completed_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("test_send", schema=None) as batch_op:
        batch_op.create_index(
            "ix_test_send_journey_time", ["journey_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("test_send", schema=None) as batch_op:
        batch_op.drop_index("ix_test_send_journey_time")
    op.drop_table("test_send")
