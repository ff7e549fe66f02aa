"""Media search: an FTS5 index on SQLite, a tsvector column with a GIN index on PostgreSQL.

Revision ID: b3c1f0a9d2e4
Revises: e78e58d71736
Create Date: 2026-11-25 17:15:00

"""

import sqlalchemy as sa
from alembic import op

revision = "b3c1f0a9d2e4"
down_revision = "e78e58d71736"
branch_labels = None
depends_on = None

SQLITE_UP = [
    "CREATE VIRTUAL TABLE media_fts USING fts5("
    "title, description, content='media', content_rowid='id', tokenize='unicode61')",
    "CREATE TRIGGER media_fts_insert AFTER INSERT ON media BEGIN "
    "INSERT INTO media_fts(rowid, title, description) "
    "VALUES (new.id, new.title, new.description); END",
    "CREATE TRIGGER media_fts_delete AFTER DELETE ON media BEGIN "
    "INSERT INTO media_fts(media_fts, rowid, title, description) "
    "VALUES ('delete', old.id, old.title, old.description); END",
    "CREATE TRIGGER media_fts_update AFTER UPDATE OF title, description ON media BEGIN "
    "INSERT INTO media_fts(media_fts, rowid, title, description) "
    "VALUES ('delete', old.id, old.title, old.description); "
    "INSERT INTO media_fts(rowid, title, description) "
    "VALUES (new.id, new.title, new.description); END",
    "INSERT INTO media_fts(media_fts) VALUES ('rebuild')",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS media_fts_update",
    "DROP TRIGGER IF EXISTS media_fts_delete",
    "DROP TRIGGER IF EXISTS media_fts_insert",
    "DROP TABLE IF EXISTS media_fts",
]
POSTGRES_UP = [
    "ALTER TABLE media ADD COLUMN search tsvector GENERATED ALWAYS AS "
    "(to_tsvector('simple', coalesce(title, '') || ' ' || coalesce(description, ''))) STORED",
    "CREATE INDEX ix_media_search ON media USING gin (search)",
]
POSTGRES_DOWN = ["DROP INDEX IF EXISTS ix_media_search", "ALTER TABLE media DROP COLUMN search"]


def _run(statements: list[str]) -> None:
    for statement in statements:
        op.execute(sa.text(statement))


def upgrade():
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_media_created_at_id"), ["created_at", "id"], unique=False
        )
    dialect = op.get_bind().dialect.name
    _run({"sqlite": SQLITE_UP, "postgresql": POSTGRES_UP}.get(dialect, []))


def downgrade():
    dialect = op.get_bind().dialect.name
    _run({"sqlite": SQLITE_DOWN, "postgresql": POSTGRES_DOWN}.get(dialect, []))
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_media_created_at_id"))
