"""Fresh, empty databases for tests and benchmarks that must start from nothing."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from lti_tool.config import database_url


@contextmanager
def fresh_database(server: str | None, prefix: str = "lti_tool_fresh") -> Iterator[str]:
    """A new SQLite file, or a new database on the PostgreSQL `server`; removed afterwards."""
    if not server:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/fresh.sqlite3"
        return
    admin = sa.create_engine(database_url(server), isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
