"""Background jobs, media processing (status, renditions, probe figures), resumable uploads.

Revision ID: ecbafeccdc3c
Revises: 7c2d9e4f1a3b
Create Date: 2026-12-01 02:24:28.079499

"""

import sqlalchemy as sa
from alembic import op

import lti_tool.models

revision = "ecbafeccdc3c"
down_revision = "7c2d9e4f1a3b"
branch_labels = None
depends_on = None

MEDIA_STATUSES = ("queued", "processing", "ready", "failed")


def _media_columns() -> list[sa.Column]:
    return [
        sa.Column(
            "status",
            sa.Enum(
                *MEDIA_STATUSES,
                name="media_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            server_default="ready",
            nullable=False,
            comment="processing into web-playable files; items older than processing are ready",
        ),
        sa.Column(
            "progress",
            sa.Integer(),
            server_default="0",
            nullable=False,
            comment="percent, while processing",
        ),
        sa.Column(
            "status_reason",
            sa.Text(),
            server_default="",
            nullable=False,
            comment="why processing failed, for the teacher",
        ),
        sa.Column("duration", sa.Float(), nullable=True, comment="seconds, from ffprobe"),
        sa.Column(
            "width", sa.Integer(), nullable=True, comment="displayed width (rotation applied)"
        ),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column(
            "playback_path",
            sa.String(length=255),
            nullable=True,
            comment="H.264/AAC MP4 (or AAC .m4a) rendition relative to MEDIA_ROOT",
        ),
        sa.Column(
            "hls_path",
            sa.String(length=255),
            nullable=True,
            comment="HLS master playlist; its renditions and segments sit beside it",
        ),
        sa.Column(
            "poster_path",
            sa.String(length=255),
            nullable=True,
            comment="full-size poster frame relative to MEDIA_ROOT",
        ),
        sa.Column(
            "renditions_path",
            sa.String(length=255),
            nullable=True,
            comment="folder of every processed file, removed with the item",
        ),
    ]


def _sqlite_media_columns() -> list[str]:
    # SQLite adds (and drops) plain columns in place: the media table keeps AUTOINCREMENT and
    # its full-text triggers, which a batch rebuild would have to recreate.
    statuses = ", ".join(f"'{s}'" for s in MEDIA_STATUSES)
    return [
        "status VARCHAR(32) DEFAULT 'ready' NOT NULL "
        f"CONSTRAINT ck_media_media_status CHECK (status IN ({statuses}))",
        "progress INTEGER DEFAULT '0' NOT NULL",
        "status_reason TEXT DEFAULT '' NOT NULL",
        "duration FLOAT",
        "width INTEGER",
        "height INTEGER",
        "playback_path VARCHAR(255)",
        "hls_path VARCHAR(255)",
        "poster_path VARCHAR(255)",
        "renditions_path VARCHAR(255)",
    ]


def upgrade():
    op.create_table(
        "job",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "kind", sa.String(length=64), nullable=False, comment="what runs, e.g. media.process"
        ),
        sa.Column("queue", sa.String(length=16), nullable=False, comment="short or long"),
        sa.Column(
            "subject",
            sa.String(length=255),
            nullable=True,
            comment="what it works on, e.g. media:42: one active job per subject",
        ),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "waiting",
                "running",
                "done",
                "failed",
                name="job_state",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("progress", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "worker",
            sa.String(length=255),
            server_default="",
            nullable=False,
            comment="host and process running it",
        ),
        sa.Column("created_at", lti_tool.models.Timestamp(timezone=True), nullable=False),
        sa.Column(
            "run_after",
            lti_tool.models.Timestamp(timezone=True),
            nullable=True,
            comment="not before (retry backoff)",
        ),
        sa.Column(
            "dispatched_at",
            lti_tool.models.Timestamp(timezone=True),
            nullable=True,
            comment="last handed to the broker",
        ),
        sa.Column("started_at", lti_tool.models.Timestamp(timezone=True), nullable=True),
        sa.Column("heartbeat_at", lti_tool.models.Timestamp(timezone=True), nullable=True),
        sa.Column("finished_at", lti_tool.models.Timestamp(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job")),
    )
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_finished_at"), ["finished_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_job_state_created_at"), ["state", "created_at"], unique=False
        )
        batch_op.create_index(
            "uq_job_active_subject",
            ["subject"],
            unique=True,
            sqlite_where=sa.text("state IN ('waiting', 'running')"),
            postgresql_where=sa.text("state IN ('waiting', 'running')"),
        )

    op.create_table(
        "upload",
        sa.Column("id", sa.String(length=64), nullable=False, comment="random, in the URL"),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=True),
        sa.Column("length", sa.BigInteger(), nullable=False, comment="bytes announced"),
        sa.Column("offset", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "mime_type", sa.String(length=127), nullable=True, comment="sniffed from the start"
        ),
        sa.Column(
            "details",
            sa.JSON(),
            nullable=False,
            comment="title, file name, description, visibility",
        ),
        sa.Column("media_id", sa.Integer(), nullable=True, comment="the item, once complete"),
        sa.Column("created_at", lti_tool.models.Timestamp(timezone=True), nullable=False),
        sa.Column("updated_at", lti_tool.models.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["category.id"],
            name=op.f("fk_upload_category_id_category"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["media_id"], ["media.id"], name=op.f("fk_upload_media_id_media"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_upload_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload")),
    )
    with op.batch_alter_table("upload", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_upload_updated_at"), ["updated_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_upload_user_id"), ["user_id"], unique=False)

    if op.get_bind().dialect.name == "sqlite":
        for column in _sqlite_media_columns():
            op.execute(f"ALTER TABLE media ADD COLUMN {column}")
    else:
        for column in _media_columns():
            op.add_column("media", column)


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        for column in reversed(_sqlite_media_columns()):
            op.execute(f"ALTER TABLE media DROP COLUMN {column.split()[0]}")
    else:
        for column in reversed(_media_columns()):
            op.drop_column("media", column.name)

    with op.batch_alter_table("upload", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_upload_user_id"))
        batch_op.drop_index(batch_op.f("ix_upload_updated_at"))

    op.drop_table("upload")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_job_active_subject",
            sqlite_where=sa.text("state IN ('waiting', 'running')"),
            postgresql_where=sa.text("state IN ('waiting', 'running')"),
        )
        batch_op.drop_index(batch_op.f("ix_job_state_created_at"))
        batch_op.drop_index(batch_op.f("ix_job_finished_at"))

    op.drop_table("job")
