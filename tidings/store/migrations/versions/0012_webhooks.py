"""webhooks: endpoints subscribed to tidings' events, and their outbox

- ``webhook_endpoint``: an HTTPS URL, the event types it takes, its app (or every app), its
  sealed signing secret, paused or not.
- ``webhook_delivery``: one event bound for one endpoint, written in the transaction of the
  fact it reports; the outbox columns of the inbound events (attempts, per-row backoff,
  set aside after a limit).

Revision ID: 0012_webhooks
Revises: 0011_send_fence
Create Date: 2026-12-05 08:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tidings.store.types

revision: str = "0012_webhooks"
down_revision: str | Sequence[str] | None = "0011_send_fence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> tidings.store.types.UTCDateTime:
    return tidings.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_endpoint",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=True),
        sa.Column("event_types", JSON, nullable=False),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("paused_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "webhook_delivery",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("endpoint_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("profile_id", sa.String(length=128), nullable=True),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("forwarded_at", _utc(), nullable=True),
        sa.Column("forward_attempts", sa.Integer(), nullable=False),
        sa.Column("forward_failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _utc(), nullable=True),
        sa.Column("forward_failed_at", _utc(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoint.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_delivery_event"),
    )
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_delivery_outbox",
            ["forwarded_at", "forward_failed_at", "id"],
            unique=False,
        )
        batch_op.create_index("ix_webhook_delivery_endpoint", ["endpoint_id", "id"], unique=False)
        batch_op.create_index("ix_webhook_delivery_profile", ["profile_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_delivery_profile")
        batch_op.drop_index("ix_webhook_delivery_endpoint")
        batch_op.drop_index("ix_webhook_delivery_outbox")
    op.drop_table("webhook_delivery")
    op.drop_table("webhook_endpoint")
