"""journeys started on a schedule (Temporal Schedules fire them)

- ``journey_schedule``: what each schedule was asked for (journey, cadence, time zone,
  audience) and the outcome of its latest firing.

Revision ID: 0009_schedules
Revises: 0008_event_traceparent
Create Date: 2026-12-05 05:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tidings.store.types

revision: str = "0009_schedules"
down_revision: str | Sequence[str] | None = "0008_event_traceparent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _utc() -> tidings.store.types.UTCDateTime:
    return tidings.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "journey_schedule",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("journey_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", sa.String(length=32), nullable=True),
        sa.Column("weekday", sa.String(length=16), nullable=True),
        sa.Column("every", sa.String(length=32), nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("audience", JSON, nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("last_fired_at", _utc(), nullable=True),
        sa.Column("last_run_id", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_journey_schedule_journey", "journey_schedule", ["journey_id"])


def downgrade() -> None:
    op.drop_index("ix_journey_schedule_journey", table_name="journey_schedule")
    op.drop_table("journey_schedule")
