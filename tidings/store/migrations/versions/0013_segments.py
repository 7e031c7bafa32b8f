"""segments: named audience filters

- ``segment``: a name (unique, the key), a description, the definition as written (JSON),
  created and updated times.
- indexes led by the profile on ``device``, ``interaction`` and ``run_member``, which a
  segment's compiled query probes for each profile it considers.

Revision ID: 0013_segments
Revises: 0012_webhooks
Create Date: 2026-12-05 08:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tidings.store.types

revision: str = "0013_segments"
down_revision: str | Sequence[str] | None = "0012_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _utc() -> tidings.store.types.UTCDateTime:
    return tidings.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "segment",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # a segment's EXISTS tests probe these tables profile by profile: without an index led
    # by the profile, each probe would scan the table
    with op.batch_alter_table("device", schema=None) as batch_op:
        batch_op.create_index("ix_device_profile", ["profile_id", "state"], unique=False)
    with op.batch_alter_table("interaction", schema=None) as batch_op:
        batch_op.create_index(
            "ix_interaction_profile", ["profile_id", "kind", "occurred_at"], unique=False
        )
    with op.batch_alter_table("run_member", schema=None) as batch_op:
        batch_op.create_index("ix_run_member_profile", ["profile_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("run_member", schema=None) as batch_op:
        batch_op.drop_index("ix_run_member_profile")
    with op.batch_alter_table("interaction", schema=None) as batch_op:
        batch_op.drop_index("ix_interaction_profile")
    with op.batch_alter_table("device", schema=None) as batch_op:
        batch_op.drop_index("ix_device_profile")
    op.drop_table("segment")
