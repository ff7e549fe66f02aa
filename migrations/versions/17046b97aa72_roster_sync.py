"""Roster sync (NRPS): course groups keep their memberships URL and last sync, memberships their
source, and every sync and change is recorded.

Revision ID: 17046b97aa72
Revises: ecbafeccdc3c
Create Date: 2026-12-01

"""

import sqlalchemy as sa
from alembic import op

import lti_tool.models

revision = "17046b97aa72"
down_revision = "ecbafeccdc3c"
branch_labels = None
depends_on = None

# (table, column for PostgreSQL, the same for SQLite's in-place ADD COLUMN): SQLite keeps the
# tables' AUTOINCREMENT and triggers, which a batch rebuild would have to recreate.
COLUMNS = [
    (
        "lti_platform",
        sa.Column(
            "roster_answered_at",
            lti_tool.models.Timestamp(timezone=True),
            nullable=True,
            comment="last time the platform answered a roster (NRPS) request",
        ),
        "roster_answered_at DATETIME",
    ),
    (
        "rbac_group",
        sa.Column(
            "memberships_url",
            sa.String(length=2048),
            nullable=True,
            comment="NRPS context_memberships_url from the latest launch carrying it",
        ),
        "memberships_url VARCHAR(2048)",
    ),
    (
        "rbac_group",
        sa.Column(
            "roster_synced_at",
            lti_tool.models.Timestamp(timezone=True),
            nullable=True,
            comment="when the last roster sync finished, complete or not",
        ),
        "roster_synced_at DATETIME",
    ),
    (
        "rbac_group",
        sa.Column(
            "roster_status",
            sa.Enum(
                "running",
                "ok",
                "failed",
                name="roster_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        "roster_status VARCHAR(32) CONSTRAINT ck_rbac_group_roster_status "
        "CHECK (roster_status IN ('running', 'ok', 'failed'))",
    ),
    (
        "rbac_group",
        sa.Column(
            "roster_error",
            sa.Text(),
            server_default="",
            nullable=False,
            comment="why the last sync failed, for managers",
        ),
        "roster_error TEXT DEFAULT '' NOT NULL",
    ),
    (
        "rbac_group",
        sa.Column(
            "roster_counts",
            sa.JSON(),
            nullable=True,
            comment="members, added, updated, removed, skipped of the last sync",
        ),
        "roster_counts JSON",
    ),
    (
        "rbac_membership",
        sa.Column(
            "source",
            sa.Enum(
                "launch",
                "roster",
                "manual",
                name="membership_source",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            server_default="launch",
            nullable=False,
            comment="launch or roster: a sync may remove it; manual: never",
        ),
        "source VARCHAR(32) DEFAULT 'launch' NOT NULL "
        "CONSTRAINT ck_rbac_membership_membership_source "
        "CHECK (source IN ('launch', 'roster', 'manual'))",
    ),
]


def upgrade():
    op.create_table(
        "roster_sync",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("rbac_group_id", sa.Integer(), nullable=False),
        sa.Column(
            "trigger", sa.String(length=16), nullable=False, comment="manager, command or launch"
        ),
        sa.Column("triggered_by_id", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "running",
                "ok",
                "failed",
                name="roster_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("members", sa.Integer(), server_default="0", nullable=False),
        sa.Column("added", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated", sa.Integer(), server_default="0", nullable=False),
        sa.Column("removed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.Column("started_at", lti_tool.models.Timestamp(timezone=True), nullable=False),
        sa.Column("finished_at", lti_tool.models.Timestamp(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["rbac_group_id"],
            ["rbac_group.id"],
            name=op.f("fk_roster_sync_rbac_group_id_rbac_group"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["triggered_by_id"],
            ["user_account.id"],
            name=op.f("fk_roster_sync_triggered_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roster_sync")),
    )
    with op.batch_alter_table("roster_sync", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_roster_sync_rbac_group_id_started_at"),
            ["rbac_group_id", "started_at"],
            unique=False,
        )

    op.create_table(
        "roster_change",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "roster_sync_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column(
            "name",
            sa.String(length=255),
            server_default="",
            nullable=False,
            comment="who, as shown at the time",
        ),
        sa.Column(
            "kind",
            sa.Enum(
                "added",
                "updated",
                "removed",
                name="roster_change_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "old_role",
            sa.Enum(
                "member",
                "contributor",
                "manager",
                name="old_group_role",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column(
            "new_role",
            sa.Enum(
                "member",
                "contributor",
                "manager",
                name="new_group_role",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["roster_sync_id"],
            ["roster_sync.id"],
            name=op.f("fk_roster_change_roster_sync_id_roster_sync"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_roster_change_user_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roster_change")),
    )
    with op.batch_alter_table("roster_change", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_roster_change_roster_sync_id"), ["roster_sync_id"], unique=False
        )

    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, column, sqlite_column in COLUMNS:
        if sqlite:
            op.execute(f"ALTER TABLE {table} ADD COLUMN {sqlite_column}")
        else:
            op.add_column(table, column)


def downgrade():
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, column, _ in reversed(COLUMNS):
        if sqlite:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column.name}")
        else:
            op.drop_column(table, column.name)

    with op.batch_alter_table("roster_change", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_roster_change_roster_sync_id"))

    op.drop_table("roster_change")
    with op.batch_alter_table("roster_sync", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_roster_sync_rbac_group_id_started_at"))

    op.drop_table("roster_sync")
