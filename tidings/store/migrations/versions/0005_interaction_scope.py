"""interaction scope: event ids unique per app, per-row forwarding backoff, replaced tokens

- ``interaction.scope`` (the app whose push it is, or the reporting app; '' for none) and a
  unique (scope, event_id) in place of the global unique event id: one app's event ids can no
  longer turn another app's reports into silent duplicates.
- ``interaction.forward_failures``, ``next_attempt_at`` and ``forward_failed_at``: a row
  Temporal refuses backs off on its own and is given up after the forwarder's limit.
- ``replaced_token``: the digests of tokens a device gave up on a refresh, so a report about
  a push sent before the refresh is still recognised.

Revision ID: 0005_interaction_scope
Revises: 0004_journeys
Create Date: 2026-11-23 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tidings.store.types

revision: str = "0005_interaction_scope"
down_revision: str | Sequence[str] | None = "0004_journeys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# SQLite keeps 0001's unique event id unnamed; this convention names it so batch mode can
# drop it.
SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _utc() -> tidings.store.types.UTCDateTime:
    return tidings.store.types.UTCDateTime(timezone=True)


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _unique_name(columns: list[str]) -> str:
    """PostgreSQL's name for the interaction table's unique constraint on these columns."""
    for constraint in sa.inspect(op.get_bind()).get_unique_constraints("interaction"):
        if constraint["column_names"] == columns and constraint["name"]:
            return str(constraint["name"])
    raise RuntimeError(f"interaction has no unique constraint on {columns}")


def upgrade() -> None:
    with op.batch_alter_table("interaction", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scope", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("forward_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("next_attempt_at", _utc(), nullable=True))
        batch_op.add_column(sa.Column("forward_failed_at", _utc(), nullable=True))
    op.execute("UPDATE interaction SET scope = COALESCE(app_id, '')")
    if _is_sqlite():
        with op.batch_alter_table(
            "interaction", schema=None, naming_convention=SQLITE_NAMES
        ) as batch_op:
            batch_op.drop_constraint("uq_interaction_event_id", type_="unique")
            batch_op.create_unique_constraint("uq_interaction_scope_event", ["scope", "event_id"])
            batch_op.alter_column("scope", server_default=None)
            batch_op.alter_column("forward_failures", server_default=None)
    else:
        op.drop_constraint(_unique_name(["event_id"]), "interaction", type_="unique")
        op.create_unique_constraint(
            "uq_interaction_scope_event", "interaction", ["scope", "event_id"]
        )
        op.alter_column("interaction", "scope", server_default=None)
        op.alter_column("interaction", "forward_failures", server_default=None)

    op.create_table(
        "replaced_token",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("replaced_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["device.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("replaced_token", schema=None) as batch_op:
        batch_op.create_index(
            "ix_replaced_token_device", ["device_id", "token_digest"], unique=False
        )


def downgrade() -> None:
    """Back to one global event id: fails if two apps have stored the same event id since."""
    with op.batch_alter_table("replaced_token", schema=None) as batch_op:
        batch_op.drop_index("ix_replaced_token_device")
    op.drop_table("replaced_token")
    with op.batch_alter_table("interaction", schema=None) as batch_op:
        batch_op.drop_constraint("uq_interaction_scope_event", type_="unique")
        # the names each backend gave 0001's unnamed constraint
        batch_op.create_unique_constraint(
            "uq_interaction_event_id" if _is_sqlite() else "interaction_event_id_key",
            ["event_id"],
        )
        batch_op.drop_column("forward_failed_at")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("forward_failures")
        batch_op.drop_column("scope")
