"""Media: a preview image and WebVTT captions per item.

Revision ID: e78e58d71736
Revises: e4514e91eb5f
Create Date: 2026-11-25 17:06:34.315743

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "e78e58d71736"
down_revision = "e4514e91eb5f"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "thumbnail_path",
                sa.String(length=255),
                nullable=True,
                comment="generated preview image relative to MEDIA_ROOT; empty: placeholder",
            )
        )
        batch_op.add_column(
            sa.Column(
                "captions_path",
                sa.String(length=255),
                nullable=True,
                comment="WebVTT captions relative to MEDIA_ROOT",
            )
        )


def downgrade():
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_column("captions_path")
        batch_op.drop_column("thumbnail_path")
