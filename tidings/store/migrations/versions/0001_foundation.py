"""foundation: apps, profiles, devices, journeys, ledger, interactions

Revision ID: 0001_foundation
Revises:
Create Date: 2026-11-22 06:58:35.370387
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tidings.store.types

revision: str = "0001_foundation"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "app",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "apns_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "fcm_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("apns_secret", sa.Text(), nullable=True),
        sa.Column("fcm_secret", sa.Text(), nullable=True),
        sa.Column("credentials_version", sa.Integer(), nullable=False),
        sa.Column("apns_fault", sa.Text(), nullable=True),
        sa.Column("fcm_fault", sa.Text(), nullable=True),
        sa.Column("created_at", tidings.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tidings.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "delivery",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("send_key", sa.String(length=400), nullable=False),
        sa.Column("tracking_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=200), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("journey_id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("visit", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("profile_id", sa.String(length=128), nullable=False),
        sa.Column("device_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("provider", sa.String(length=8), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("expires_at", tidings.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", tidings.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", tidings.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("send_key"),
        sa.UniqueConstraint("tracking_id"),
    )
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index(
            "ix_delivery_profile_time", ["profile_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_delivery_run_node", ["run_id", "node_id", "status"], unique=False)
        batch_op.create_index("ix_delivery_workflow", ["workflow_id"], unique=False)

    op.create_table(
        "interaction",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("tracking_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("action_id", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("app_id", sa.String(length=64), nullable=True),
        sa.Column("profile_id", sa.String(length=128), nullable=True),
        sa.Column("workflow_id", sa.String(length=255), nullable=True),
        sa.Column("node_id", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("occurred_at", tidings.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", tidings.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("forwarded_at", tidings.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("forward_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    with op.batch_alter_table("interaction", schema=None) as batch_op:
        batch_op.create_index("ix_interaction_outbox", ["status", "forwarded_at"], unique=False)
        batch_op.create_index("ix_interaction_tracking", ["tracking_id"], unique=False)

    op.create_table(
        "journey",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", tidings.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tidings.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "journey_run",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("journey_id", sa.String(length=64), nullable=False),
        sa.Column("journey_version", sa.Integer(), nullable=True),
        sa.Column(
            "definition",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "entry",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "summary",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", tidings.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", tidings.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("journey_run", schema=None) as batch_op:
        batch_op.create_index("ix_journey_run_journey", ["journey_id", "started_at"], unique=False)

    op.create_table(
        "profile",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("locale", sa.String(length=35), nullable=True),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", tidings.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tidings.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
        sa.UniqueConstraint("phone"),
    )
    op.create_table(
        "app_user_mapping",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("app_user_id", sa.String(length=256), nullable=False),
        sa.Column("profile_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", tidings.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["app.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["profile_id"], ["profile.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("app_id", "app_user_id"),
    )
    with op.batch_alter_table("app_user_mapping", schema=None) as batch_op:
        batch_op.create_index("ix_app_user_mapping_profile", ["profile_id"], unique=False)

    op.create_table(
        "device",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("profile_id", sa.String(length=128), nullable=False),
        sa.Column("provider", sa.String(length=8), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("environment", sa.String(length=16), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column(
            "state_changed_at", tidings.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("registered_at", tidings.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", tidings.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["app.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["profile_id"], ["profile.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "token", name="uq_device_app_token"),
    )
    with op.batch_alter_table("device", schema=None) as batch_op:
        batch_op.create_index(
            "ix_device_targeting", ["app_id", "profile_id", "state"], unique=False
        )

    op.create_table(
        "journey_version",
        sa.Column("journey_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "definition",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", tidings.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["journey_id"], ["journey.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("journey_id", "version"),
    )
    op.create_table(
        "run_member",
        sa.Column("run_id", sa.String(length=200), nullable=False),
        sa.Column("profile_id", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["journey_run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "profile_id"),
    )


def downgrade() -> None:
    op.drop_table("run_member")
    op.drop_table("journey_version")
    with op.batch_alter_table("device", schema=None) as batch_op:
        batch_op.drop_index("ix_device_targeting")

    op.drop_table("device")
    with op.batch_alter_table("app_user_mapping", schema=None) as batch_op:
        batch_op.drop_index("ix_app_user_mapping_profile")

    op.drop_table("app_user_mapping")
    op.drop_table("profile")
    with op.batch_alter_table("journey_run", schema=None) as batch_op:
        batch_op.drop_index("ix_journey_run_journey")

    op.drop_table("journey_run")
    op.drop_table("journey")
    with op.batch_alter_table("interaction", schema=None) as batch_op:
        batch_op.drop_index("ix_interaction_tracking")
        batch_op.drop_index("ix_interaction_outbox")

    op.drop_table("interaction")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_workflow")
        batch_op.drop_index("ix_delivery_run_node")
        batch_op.drop_index("ix_delivery_profile_time")

    op.drop_table("delivery")
    op.drop_table("app")
