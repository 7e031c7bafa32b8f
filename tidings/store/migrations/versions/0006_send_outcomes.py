"""send outcomes: unknown outcomes counted, and a typed cause beside the free-text reason

- ``delivery.unknown_outcomes``: requests of the row whose answer was lost after they were
  sent (a reset, a timeout); a delivered row with any may have reached the device twice.
- ``delivery.cause``: why a row did not end delivered, typed (``app_stopped``,
  ``push_refused``, ``retry_horizon``, ...), so reports never parse the reason back.

Revision ID: 0006_send_outcomes
Revises: 0005_interaction_scope
Create Date: 2026-12-04 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_send_outcomes"
down_revision: str | Sequence[str] | None = "0005_interaction_scope"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("unknown_outcomes", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("cause", sa.String(length=24), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_column("cause")
        batch_op.drop_column("unknown_outcomes")
