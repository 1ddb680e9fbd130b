"""Creating the database engine: one per service, shared by our queries and TaskFlow."""

from __future__ import annotations

import contextlib
import fcntl
import os

import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Engine

from volmigrate.db import migrations

# Seconds a writer waits for SQLite's lock before "database is locked".
SQLITE_BUSY_TIMEOUT = 60


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets readers (a `volmigrate progress` in another process) run beside
    # the writer; synchronous=NORMAL in WAL mode is still safe against a
    # killed process (only an OS crash can lose the last transactions).
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def create_engine(url: str) -> Engine:
    """Build the engine for `url`, creating the SQLite file's folder if needed."""
    parsed = sa.engine.make_url(url)
    kwargs: dict = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False}
    engine = sa.create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _alembic_config(connection) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", os.path.dirname(migrations.__file__))
    config.attributes["connection"] = connection
    return config


@contextlib.contextmanager
def _schema_lock(engine: Engine):
    """One upgrader at a time: two services starting at once on one SQLite file
    would both try to create the tables. Other databases have transactional DDL."""
    database = engine.url.database
    if engine.url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(os.path.abspath(database) + ".schema-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def upgrade_schema(engine: Engine) -> None:
    """Bring volmigrate's tables to the newest revision; idempotent.

    A database made before the migrations existed (tables, no version table)
    is stamped with the first revision, whose schema it has, then upgraded.
    """
    with _schema_lock(engine), engine.begin() as connection:
        tables = set(sa.inspect(connection).get_table_names())
        config = _alembic_config(connection)
        if "volumes" in tables and migrations.VERSION_TABLE not in tables:
            alembic_command.stamp(config, migrations.FIRST_REVISION)
        alembic_command.upgrade(config, "head")
