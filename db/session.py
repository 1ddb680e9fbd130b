"""Creating the database engine: one per service, shared by our queries and TaskFlow."""

from __future__ import annotations

import os

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from volmigrate.db import models

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


def create_schema(engine: Engine) -> None:
    models.Base.metadata.create_all(engine)
