"""send fence holder: the execution holding a batch's fence, by a token of its own

- ``send_fence.holder``: two executions of a batch may carry the same attempt number (a
  local activity run again after its workflow task was lost), so the fence names its holder
  by a token; rows written before have none and are free to take.

Revision ID: 0014_send_fence_holder
Revises: 0013_segments
Create Date: 2026-12-06 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_send_fence_holder"
down_revision: str | Sequence[str] | None = "0013_segments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("send_fence") as batch:
        batch.add_column(sa.Column("holder", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("send_fence") as batch:
        batch.drop_column("holder")
