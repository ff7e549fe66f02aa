"""Flask extensions, created unbound and initialised by the application factory."""

import sqlite3
import time

from flask_caching import Cache
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import Pool

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Objects stay readable after commit: a launch commits, then signs the user in and redirects
# without reloading the rows it has just written.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
cache = Cache()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    # SQLite ignores ON DELETE rules unless foreign keys are switched on per connection;
    # the busy timeout lets several gunicorn workers wait for the file's write lock, and WAL
    # lets them read while one writes (it stays set in the file once one connection sets it).
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            pass  # another connection is switching it right now
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


# Seconds a server connection may sit in the pool before it is tested on checkout. A firewall
# or a database restart drops idle connections; one used moments ago is as good as tested,
# and pinging it anyway (pool_pre_ping) costs a round trip on every request.
IDLE_PING_SECONDS = 10


@event.listens_for(Pool, "checkin")
def _note_idle_since(dbapi_connection, connection_record) -> None:
    connection_record.info["idle_since"] = time.monotonic()


@event.listens_for(Pool, "checkout")
def _ping_if_idle(dbapi_connection, connection_record, connection_proxy) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        return  # a file cannot drop the connection
    since = connection_record.info.get("idle_since")
    if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
        return  # new, or used moments ago
    dialect = connection_proxy._pool._dialect
    try:
        alive = dialect.do_ping(dbapi_connection)
    except dialect.loaded_dbapi.Error as e:
        if not dialect.is_disconnect(e, dbapi_connection, None):
            raise
        alive = False
    if not alive:
        raise DisconnectionError("the idle connection was dropped")  # the pool connects anew
