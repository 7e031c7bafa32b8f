"""custom events share the interactions' outbox: the app that posted, per-row backoff,
set-aside, and what forwarding did

- ``custom_event.app_id``: the app whose key posted the event (NULL: the admin), so an app's
  key lists and requeues only its own events.
- ``custom_event.forward_failures``, ``next_attempt_at`` and ``forward_failed_at``: an event
  Temporal refuses backs off on its own and is set aside after the forwarder's limit.
- ``custom_event.outcome``: the journeys forwarding started, signalled or kept the profile
  out of (``GET /v1/events/{event_id}``).

Revision ID: 0007_inbound_event_outbox
Revises: 0006_send_outcomes
Create Date: 2026-12-04 19:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tidings.store.types

revision: str = "0007_inbound_event_outbox"
down_revision: str | Sequence[str] | None = "0006_send_outcomes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _utc() -> tidings.store.types.UTCDateTime:
    return tidings.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("custom_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("app_id", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("forward_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("next_attempt_at", _utc(), nullable=True))
        batch_op.add_column(sa.Column("forward_failed_at", _utc(), nullable=True))
        batch_op.add_column(sa.Column("outcome", JSON, nullable=True))
    with op.batch_alter_table("custom_event", schema=None) as batch_op:
        batch_op.alter_column("forward_failures", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("custom_event", schema=None) as batch_op:
        batch_op.drop_column("outcome")
        batch_op.drop_column("forward_failed_at")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("forward_failures")
        batch_op.drop_column("app_id")
