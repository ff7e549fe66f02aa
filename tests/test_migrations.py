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
