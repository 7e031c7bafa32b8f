"""journeys: journey events, custom events, triggers and triggered entries

Revision ID: 0004_journeys
Revises: 0003_delivery
Create Date: 2026-11-22 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tidings.store.types

revision: str = "0004_journeys"
down_revision: str | Sequence[str] | None = "0003_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _utc() -> tidings.store.types.UTCDateTime:
    return tidings.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "journey_event",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("event_key", sa.String(length=500), nullable=False),
        sa.Column("run_id", sa.String(length=200), nullable=False),
        sa.Column("journey_id", sa.String(length=64), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("profile_id", sa.String(length=128), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("until", _utc(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("occurred_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_key"),
    )
    with op.batch_alter_table("journey_event", schema=None) as batch_op:
        batch_op.create_index("ix_journey_event_run", ["run_id", "kind", "node_id"], unique=False)
        batch_op.create_index("ix_journey_event_profile", ["profile_id", "kind"], unique=False)

    op.create_table(
        "custom_event",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("profile_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("properties", JSON, nullable=False),
        sa.Column("occurred_at", _utc(), nullable=False),
        sa.Column("received_at", _utc(), nullable=False),
        sa.Column("forwarded_at", _utc(), nullable=True),
        sa.Column("forward_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    with op.batch_alter_table("custom_event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_custom_event_outbox", ["forwarded_at", "received_at"], unique=False
        )
        batch_op.create_index("ix_custom_event_profile", ["profile_id", "name"], unique=False)

    op.create_table(
        "journey_trigger",
        sa.Column("run_id", sa.String(length=200), nullable=False),
        sa.Column("journey_id", sa.String(length=64), nullable=False),
        sa.Column("event_name", sa.String(length=128), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("deactivated_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["journey_run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )
    with op.batch_alter_table("journey_trigger", schema=None) as batch_op:
        batch_op.create_index("ix_journey_trigger_event", ["event_name", "active"], unique=False)

    op.create_table(
        "journey_entry",
        sa.Column("journey_id", sa.String(length=64), nullable=False),
        sa.Column("profile_id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=200), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("first_entered_at", _utc(), nullable=False),
        sa.Column("last_entered_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("journey_id", "profile_id"),
    )
    with op.batch_alter_table("journey_entry", schema=None) as batch_op:
        batch_op.create_index("ix_journey_entry_profile", ["profile_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("journey_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_journey_entry_profile")
    op.drop_table("journey_entry")
    with op.batch_alter_table("journey_trigger", schema=None) as batch_op:
        batch_op.drop_index("ix_journey_trigger_event")
    op.drop_table("journey_trigger")
    with op.batch_alter_table("custom_event", schema=None) as batch_op:
        batch_op.drop_index("ix_custom_event_profile")
        batch_op.drop_index("ix_custom_event_outbox")
    op.drop_table("custom_event")
    with op.batch_alter_table("journey_event", schema=None) as batch_op:
        batch_op.drop_index("ix_journey_event_profile")
        batch_op.drop_index("ix_journey_event_run")
    op.drop_table("journey_event")
