"""Launch log: indexes on (created_at, id) and (user_id, created_at, id) for the audit
viewer's keyset pages.

Revision ID: 259cba3ba60e
Revises: b3c1f0a9d2e4
Create Date: 2026-11-25 17:46:13.508753

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "259cba3ba60e"
down_revision = "b3c1f0a9d2e4"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("lti_launch_log", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_lti_launch_log_created_at_id"), ["created_at", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_lti_launch_log_user_id_created_at_id"),
            ["user_id", "created_at", "id"],
            unique=False,
        )


def downgrade():
    with op.batch_alter_table("lti_launch_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lti_launch_log_user_id_created_at_id"))
        batch_op.drop_index(batch_op.f("ix_lti_launch_log_created_at_id"))
