"""Ids that are never reused on SQLite, a per-user session version, and no launch-log indexes
that (created_at, id) already covers.

Revision ID: 7c2d9e4f1a3b
Revises: 259cba3ba60e
Create Date: 2026-11-30 19:50:00

"""

import re

import sqlalchemy as sa
from alembic import op

revision = "7c2d9e4f1a3b"
down_revision = "259cba3ba60e"
branch_labels = None
depends_on = None

# Tables whose ids leave the tool (LMS links, preview URLs, bookmarks).
NEVER_REUSED = ("user_account", "lti_platform", "category", "media", "lti_resource_link")


def _autoincrement_on_sqlite(table: str) -> None:
    """Rebuild a SQLite table with `INTEGER PRIMARY KEY AUTOINCREMENT`, keeping its rows, ids,
    indexes and triggers (media's full-text triggers among them).

    SQLite gives a new row the highest id + 1, so deleting the newest row hands its id to the
    next one; AUTOINCREMENT remembers the highest id ever used. It can only be declared in
    CREATE TABLE, hence the rebuild (env.py turns foreign keys off around migrations, so the
    drop does not cascade).
    """
    conn = op.get_bind()
    create = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar_one()
    if "AUTOINCREMENT" in create:
        return
    dependents = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') "
        "AND sql IS NOT NULL",
        (table,),
    ).scalars().all()
    pk = f"CONSTRAINT pk_{table} PRIMARY KEY (id)"
    new, found = re.subn(rf"\s*{re.escape(pk)},", "", create, count=1)
    new, found_id = re.subn(
        r"\bid INTEGER NOT NULL,", f"id INTEGER NOT NULL {pk[:-5]} AUTOINCREMENT,", new, count=1
    )
    if not (found and found_id):
        raise RuntimeError(f"unexpected schema of {table}: {create}")
    new = new.replace(f"CREATE TABLE {table} (", f"CREATE TABLE _new_{table} (", 1)
    op.execute(new)
    op.execute(f"INSERT INTO _new_{table} SELECT * FROM {table}")
    op.execute(f"DROP TABLE {table}")
    op.execute(f"ALTER TABLE _new_{table} RENAME TO {table}")
    for statement in dependents:
        op.execute(statement)


def upgrade():
    if op.get_bind().dialect.name == "sqlite":
        for table in NEVER_REUSED:
            _autoincrement_on_sqlite(table)
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "session_version",
                sa.Integer(),
                server_default="0",
                nullable=False,
                comment="raised to end every existing session: sign-out, password or role change",
            )
        )
    op.drop_index("ix_lti_launch_log_created_at_desc", table_name="lti_launch_log")
    with op.batch_alter_table("lti_launch_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lti_launch_log_success"))
        batch_op.drop_index(batch_op.f("ix_lti_launch_log_created_at"))


def downgrade():
    with op.batch_alter_table("lti_launch_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lti_launch_log_created_at"), ["created_at"])
        batch_op.create_index(batch_op.f("ix_lti_launch_log_success"), ["success"])
    op.create_index(
        "ix_lti_launch_log_created_at_desc", "lti_launch_log", [sa.text("created_at DESC")]
    )
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_column("session_version")
    # AUTOINCREMENT stays: ids that are never reused harm no earlier revision.
