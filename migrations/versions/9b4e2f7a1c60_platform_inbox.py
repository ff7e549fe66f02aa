"""Platform inbox: refused logins and launches from unknown platforms or deployments, one row per
issuer, client ID and deployment ID, for an admin to turn into a setup or dismiss.

Revision ID: 9b4e2f7a1c60
Revises: 5a8d3c1e9f20
Create Date: 2026-12-01

"""

import sqlalchemy as sa
from alembic import op

import lti_tool.models

revision = "9b4e2f7a1c60"
down_revision = "5a8d3c1e9f20"
branch_labels = None
depends_on = None


def upgrade():
    # A new table: create_table works alike on SQLite and PostgreSQL (no rebuild of an old one).
    op.create_table(
        "platform_inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=False,
                  comment="iss as the request sent it"),
        sa.Column("client_id", sa.String(length=255), server_default="", nullable=False,
                  comment="empty: the login named none"),
        sa.Column("deployment_id", sa.String(length=255), server_default="", nullable=False,
                  comment="empty: the request named none"),
        sa.Column("platform_id", sa.Integer(), nullable=True,
                  comment="the known platform, when only the deployment was unknown"),
        sa.Column("category", sa.String(length=64), nullable=False,
                  comment="unknown_platform or unknown_deployment, as last refused"),
        sa.Column("claims", sa.JSON(), nullable=True,
                  comment="sanitized claims of the latest launch (no personal data)"),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("first_seen", lti_tool.models.Timestamp(timezone=True), nullable=False),
        sa.Column("last_seen", lti_tool.models.Timestamp(timezone=True), nullable=False),
        sa.Column(
            "status",
            sa.Enum("open", "dismissed", "resolved", name="inbox_status", native_enum=False,
                    create_constraint=True, length=32),
            server_default="open",
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["platform_id"], ["lti_platform.id"],
            name=op.f("fk_platform_inbox_platform_id_lti_platform"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_inbox")),
        sa.UniqueConstraint(
            "issuer", "client_id", "deployment_id",
            name=op.f("uq_platform_inbox_issuer_client_id_deployment_id"),
        ),
    )
    op.create_index(
        op.f("ix_platform_inbox_status_last_seen"), "platform_inbox", ["status", "last_seen"]
    )


def downgrade():
    op.drop_index(op.f("ix_platform_inbox_status_last_seen"), table_name="platform_inbox")
    op.drop_table("platform_inbox")
