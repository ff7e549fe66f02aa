"""The committed migrations build the models' schema, and unwind to nothing, on each database."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from lti_tool.extensions import db

from . import databases

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh_database():
    """An empty database of the kind under test: a new SQLite file, or a new PostgreSQL database."""
    server = os.environ.get("TEST_DATABASE_URL")
    with databases.fresh_database(server, "lti_tool_migrations") as url:
        yield url


def flask(url: str, instance: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL")}
    env |= {"DATABASE_URL": url, "INSTANCE_PATH": str(instance)}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def tables(url: str) -> set[str]:
    """The database's tables, less SQLite's full-text index (not a model: see migrations)."""
    engine = sa.create_engine(url)
    try:
        return {t for t in sa.inspect(engine).get_table_names() if not t.startswith("media_fts")}
    finally:
        engine.dispose()


def search_index_exists(url: str) -> bool:
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        if engine.dialect.name == "sqlite":
            return "media_fts" in inspector.get_table_names()
        return "search" in {c["name"] for c in inspector.get_columns("media")}
    finally:
        engine.dispose()


def test_upgrade_matches_the_models_and_downgrade_removes_everything(fresh_database, tmp_path):
    upgraded = flask(fresh_database, tmp_path, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert tables(fresh_database) == set(db.metadata.tables) | {"alembic_version"}
    assert search_index_exists(fresh_database)

    # autogenerate compares the migrated schema with the models and finds nothing to do
    check = flask(fresh_database, tmp_path, "db", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr

    downgraded = flask(fresh_database, tmp_path, "db", "downgrade", "base")
    assert downgraded.returncode == 0, downgraded.stderr
    assert tables(fresh_database) == {"alembic_version"}
    engine = sa.create_engine(fresh_database)
    assert "media_fts" not in sa.inspect(engine).get_table_names()
    engine.dispose()

    again = flask(fresh_database, tmp_path, "db", "upgrade")
    assert again.returncode == 0, again.stderr
    assert tables(fresh_database) == set(db.metadata.tables) | {"alembic_version"}


def test_migrations_have_one_head(tmp_path):
    heads = flask(f"sqlite:///{tmp_path / 'heads.sqlite3'}", tmp_path, "db", "heads")
    assert heads.returncode == 0, heads.stderr
    assert len(heads.stdout.strip().splitlines()) == 1


def test_upgrade_keeps_rows_and_stops_reusing_ids(fresh_database, tmp_path):
    """The rebuild that makes SQLite ids never reused keeps every row, child row and search
    entry, and afterwards the newest id is not handed out again once deleted."""
    before = flask(fresh_database, tmp_path, "db", "upgrade", "259cba3ba60e")
    assert before.returncode == 0, before.stderr
    engine = sa.create_engine(fresh_database)
    now = "2026-11-30 12:00:00"
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO user_account (username, email, name, global_role, active, joined) "
            "VALUES ('ada', '', 'Ada', 'user', true, :now), "
            "('bob', '', 'Bob', 'user', true, :now)"), {"now": now})
        conn.execute(sa.text(
            "INSERT INTO category (title, description, is_lms_course, created_at) "
            "VALUES ('Physics', '', true, :now)"), {"now": now})
        conn.execute(sa.text(
            "INSERT INTO media (title, description, file_path, original_filename, mime_type,"
            " size, owner_id, category_id, visibility, created_at, updated_at) VALUES "
            "('Lecture one', '', 'a.mp4', '', 'video/mp4', 1, 1, 1, 'members', :now, :now), "
            "('Lecture two', '', 'b.mp4', '', 'video/mp4', 1, 2, 1, 'members', :now, :now)"),
            {"now": now})
    upgraded = flask(fresh_database, tmp_path, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    try:
        with engine.begin() as conn:
            rows = conn.execute(sa.text(
                "SELECT id, owner_id, category_id FROM media ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [(1, 1, 1), (2, 2, 1)]
            assert conn.execute(sa.text("SELECT session_version FROM user_account "
                                        "WHERE id = 2")).scalar_one() == 0
            conn.execute(sa.text("DELETE FROM media WHERE id = 2"))
            conn.execute(sa.text("DELETE FROM user_account WHERE id = 2"))
            conn.execute(sa.text(
                "INSERT INTO media (title, description, file_path, original_filename, mime_type,"
                " size, owner_id, category_id, visibility, created_at, updated_at) VALUES "
                "('Lecture three', '', 'c.mp4', '', 'video/mp4', 1, 1, 1, 'members', :now, :now)"),
                {"now": now})
            conn.execute(sa.text(
                "INSERT INTO user_account (username, email, name, global_role, active, joined) "
                "VALUES ('cy', '', 'Cy', 'user', true, :now)"), {"now": now})
            assert conn.execute(sa.text(
                "SELECT id FROM media WHERE title = 'Lecture three'")).scalar_one() == 3
            assert conn.execute(sa.text(
                "SELECT id FROM user_account WHERE username = 'cy'")).scalar_one() == 3
            if engine.dialect.name == "sqlite":
                # the full-text triggers came back with the rebuilt table
                hits = conn.execute(sa.text(
                    "SELECT rowid FROM media_fts WHERE media_fts MATCH 'three'")).scalars().all()
                assert hits == [3]
    finally:
        engine.dispose()
