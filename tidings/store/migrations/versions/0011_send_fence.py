"""send fence: the newest attempt of each delivery batch being sent

- ``send_fence``: one row per batch (workflow run, activity) while it is being sent, holding
  the newest attempt that started; an older attempt still running stops sending when it
  sees a newer one. Removed when an attempt finishes the batch.

Revision ID: 0011_send_fence
Revises: 0010_test_sends
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tidings.store.types

revision: str = "0011_send_fence"
down_revision: str | Sequence[str] | None = "0010_test_sends"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "send_fence",
        sa.Column("workflow_run_id", sa.String(length=64), nullable=False),
        sa.Column("activity_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("updated_at", tidings.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workflow_run_id", "activity_id"),
    )


def downgrade() -> None:
    op.drop_table("send_fence")
