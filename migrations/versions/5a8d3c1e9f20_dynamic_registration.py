"""Dynamic registration: platforms record how they came in, whether one waits for approval, and
the LMS product and version they reported.

Revision ID: 5a8d3c1e9f20
Revises: 17046b97aa72
Create Date: 2026-12-01

"""

import sqlalchemy as sa
from alembic import op

revision = "5a8d3c1e9f20"
down_revision = "17046b97aa72"
branch_labels = None
depends_on = None

# (column for PostgreSQL, the same for SQLite's in-place ADD COLUMN): SQLite keeps the table's
# AUTOINCREMENT and triggers, which a batch rebuild would have to recreate.
COLUMNS = [
    (
        sa.Column(
            "registered_by",
            sa.Enum(
                "admin",
                "dynamic",
                name="registered_by",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            server_default="admin",
            nullable=False,
            comment="admin: entered by hand; dynamic: through LTI Dynamic Registration",
        ),
        "registered_by VARCHAR(32) DEFAULT 'admin' NOT NULL "
        "CONSTRAINT ck_lti_platform_registered_by "
        "CHECK (registered_by IN ('admin', 'dynamic'))",
    ),
    (
        sa.Column(
            "registration_pending",
            sa.Boolean(),
            server_default=sa.false(),
            nullable=False,
            comment="A dynamic registration waiting for an admin's approval (inactive until then)",
        ),
        "registration_pending BOOLEAN DEFAULT 0 NOT NULL",
    ),
    (
        sa.Column(
            "product_family_code",
            sa.String(length=64),
            nullable=True,
            comment="The LMS product as it names itself: moodle, canvas, desire2learn",
        ),
        "product_family_code VARCHAR(64)",
    ),
    (
        sa.Column(
            "product_version",
            sa.String(length=64),
            nullable=True,
            comment="The LMS version it reported when it registered",
        ),
        "product_version VARCHAR(64)",
    ),
]


def upgrade():
    sqlite = op.get_bind().dialect.name == "sqlite"
    for column, sqlite_column in COLUMNS:
        if sqlite:
            op.execute(f"ALTER TABLE lti_platform ADD COLUMN {sqlite_column}")
        else:
            op.add_column("lti_platform", column)


def downgrade():
    sqlite = op.get_bind().dialect.name == "sqlite"
    for column, _ in reversed(COLUMNS):
        if sqlite:
            op.execute(f"ALTER TABLE lti_platform DROP COLUMN {column.name}")
        else:
            op.drop_column("lti_platform", column.name)
