"""custom events keep the trace they were posted in

- ``custom_event.traceparent``: the W3C traceparent of the API request that stored the event
  (NULL when tracing is off), so the forwarder's start of a triggered journey continues the
  request's trace instead of beginning one of its own.

Revision ID: 0008_event_traceparent
Revises: 0007_inbound_event_outbox
Create Date: 2026-12-05 05:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_event_traceparent"
down_revision: str | Sequence[str] | None = "0007_inbound_event_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("custom_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("traceparent", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("custom_event", schema=None) as batch_op:
        batch_op.drop_column("traceparent")
