"""Creating the database engine: one per service, shared by our queries and TaskFlow."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import sqlite3
import stat
import urllib.parse
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

import sqlalchemy as sa
import tenacity
from oslo_log import log as logging
from sqlalchemy.engine import Engine

from volmigrate.db import migrations

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

LOG = logging.getLogger(__name__)

# Seconds a writer waits for SQLite's lock before "database is locked".
SQLITE_BUSY_TIMEOUT = 60

# Why each engine opened read-only cannot write (see create_engine).
_READ_ONLY: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


class SchemaNotWritable(Exception):
    """The schema is behind the installed code and the database cannot be written."""


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets readers (a `volmigrate progress` in another process) run beside
    # the writer; synchronous=NORMAL in WAL mode is still safe against a
    # killed process (only an OS crash can lose the last transactions).
    cur = dbapi_conn.cursor()
    _use_wal(cur)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _use_wal(cur) -> None:
    """Switch the database to WAL, once: the mode is stored in the file.

    Switching needs an exclusive lock that SQLite does not wait for (no busy
    handler): commands started at once on a new database got "database is
    locked". So the switch is retried, backing off, as the busy handler
    would, for as long as it would wait.
    """
    for attempt in tenacity.Retrying(
            retry=tenacity.retry_if_exception(_database_locked),
            wait=tenacity.wait_exponential(multiplier=0.005, max=0.1),
            stop=tenacity.stop_after_delay(SQLITE_BUSY_TIMEOUT), reraise=True):
        with attempt:
            if cur.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cur.execute("PRAGMA journal_mode=WAL")


def _database_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def sqlite_path(url: str | sa.engine.URL) -> str | None:
    """The absolute path of a SQLite URL's file; None for another database or memory."""
    parsed = sa.engine.make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:"):
        return None
    return os.path.abspath(database)


def why_not_writable(url: str | sa.engine.URL) -> str | None:
    """Why a SQLite database cannot be written here (its file or its folder), in the
    system's words; None when it can, or when it is no SQLite file.

    Asked without writing anything (a read-only state directory must stay
    untouched by the commands that only read it) and without opening the file:
    closing any descriptor of a SQLite file drops every POSIX lock this
    process holds on it, so that another process would take our open
    connections for gone and remove the WAL under them ("disk I/O error").
    """
    path = sqlite_path(url)
    if path is None:
        return None
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        return None  # created by create_engine, or its error says why not
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        return f"{os.strerror(errno.EROFS)} (its folder {folder})"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        if _mode_allows_writing(os.stat(path)):
            return (f"{os.strerror(errno.EPERM)} (an immutable or append-only file? "
                    f"see lsattr)")
        return os.strerror(errno.EACCES)
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{os.strerror(errno.EACCES)} (its folder {folder})"
    return None


def _mode_allows_writing(st: os.stat_result) -> bool:
    """Whether owner, group and mode let this process write (root always may): if
    so and access() still says no, an attribute (chattr +i or +a) forbids it."""
    if os.geteuid() == 0:
        return True
    if st.st_uid == os.geteuid():
        return bool(st.st_mode & stat.S_IWUSR)
    if st.st_gid in os.getgroups() or st.st_gid == os.getegid():
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)


def read_only_reason(engine: Engine) -> str | None:
    """Why `engine` was opened read-only (see create_engine); None if it was not."""
    return _READ_ONLY.get(engine)


def _connect_read_only(path: str) -> sqlite3.Connection:
    """A read-only SQLite connection that writes nothing beside the file.

    In WAL mode a reader needs the -wal and -shm files. A writer keeps them
    while it has the database open (SQLite removes them when the last
    connection closes): when they exist, ``mode=ro`` reads through them.
    Otherwise no writer is active; when none is expected either (a read-only
    folder, an immutable file), ``immutable=1`` reads the file alone, without
    creating them (which a read-only folder forbids, and which a reader would
    leave behind). A writer starting meanwhile through another, writable mount
    of the folder is not seen by this connection. Only a file that its owner
    may still write is read with ``mode=ro``, SQLite creating the -shm through
    which it sees that writer.
    """
    folder = os.path.dirname(path)
    shared = all(os.path.exists(path + suffix) for suffix in ("-wal", "-shm"))
    frozen = not os.access(folder, os.W_OK) or (
        not os.access(path, os.W_OK) and _mode_allows_writing(os.stat(path)))
    mode = "ro&immutable=1" if frozen and not shared else "ro"
    return sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode={mode}", uri=True,
                           timeout=SQLITE_BUSY_TIMEOUT, check_same_thread=False)


def _sqlite_read_only_pragmas(dbapi_conn, _record) -> None:
    # No journal_mode: changing it writes the database header.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA query_only=ON")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def create_engine(url: str) -> Engine:
    """Build the engine for `url`, creating the SQLite file's folder if needed.

    A SQLite database that cannot be written (a read-only state directory, an
    immutable file) is opened read-only, so that the commands that only read
    (list, show, progress) still work there; ``read_only_reason()`` tells, and
    a service must not start on it.
    """
    parsed = sa.engine.make_url(url)
    kwargs: dict = {}
    path = sqlite_path(parsed)
    reason = None
    if parsed.get_backend_name() == "sqlite":
        if path is not None:
            reason = why_not_writable(parsed)
            if reason is None:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            elif not os.path.exists(path):
                raise FileNotFoundError(errno.ENOENT, f"no database at {path}, and it "
                                                      f"cannot be created: {reason}")
            else:
                kwargs["creator"] = functools.partial(_connect_read_only, path)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False}
    engine = sa.create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect",
                        _sqlite_read_only_pragmas if reason else _sqlite_pragmas)
    if reason:
        _READ_ONLY[engine] = reason
        LOG.debug("Database %s opened read-only: %s", path, reason)
    return engine


def _alembic_config(connection) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig  # only to change the schema

    config = AlembicConfig()
    config.set_main_option("script_location", os.path.dirname(migrations.__file__))
    config.attributes["connection"] = connection
    return config


@contextlib.contextmanager
def schema_lock(engine: Engine) -> Iterator[None]:
    """One schema upgrader at a time on a SQLite file, across processes.

    Two commands run at once on a fresh state directory would both create
    the tables, and the second fails ("table ... already exists"). Every
    schema change of a SQLite file (ours, and TaskFlow's, whose own lock is a
    thread lock) is made holding an flock on ``<file>.schema-lock``; a separate
    file of TaskFlow's persistence has its own. Other databases have
    transactional DDL: no lock.
    """
    path = sqlite_path(engine.url)
    if path is None:
        yield
        return
    with open(path + ".schema-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@functools.cache
def head_revisions() -> frozenset[str]:
    """The newest revisions of our migrations, read from their files without alembic.

    Every command checks the schema when it opens the database, and importing
    alembic costs more than the rest of a read-only command. The rule is
    alembic's: a head is a revision that no other names as its down_revision.
    A test holds this equal to alembic's own ``ScriptDirectory.get_heads()``.
    """
    folder = os.path.join(os.path.dirname(migrations.__file__), "versions")
    revisions, parents = set(), set()
    for name in os.listdir(folder):
        if not name.endswith(".py") or name.startswith("__"):
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            values = _module_constants(f.read(), ("revision", "down_revision"))
        if values.get("revision") is None:
            continue
        revisions.add(values["revision"])
        down = values.get("down_revision")
        parents.update([down] if isinstance(down, str) else down or ())
    if not revisions:  # installed without the sources: alembic reads what there is
        from alembic.script import ScriptDirectory
        return frozenset(ScriptDirectory.from_config(_alembic_config(None)).get_heads())
    return frozenset(revisions - parents)


def _module_constants(source: str, names: tuple[str, ...]) -> dict:
    """The literal values assigned to `names` at the top level of a module's source."""
    import ast

    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id in names:
            found[node.targets[0].id] = ast.literal_eval(node.value)
    return found


def current_revisions(engine: Engine) -> frozenset[str]:
    """The revisions recorded in our version table (none for a new database); reads only.

    What alembic's ``MigrationContext.get_current_heads()`` reads, asked directly.
    """
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(migrations.VERSION_TABLE):
            return frozenset()
        table = sa.table(migrations.VERSION_TABLE, sa.column("version_num"))
        return frozenset(connection.execute(sa.select(table.c.version_num)).scalars())


def schema_at_head(engine: Engine) -> bool:
    """Whether volmigrate's tables are at the newest revision (reads only)."""
    return current_revisions(engine) == head_revisions()


def upgrade_schema(engine: Engine) -> None:
    """Bring volmigrate's tables to the newest revision; idempotent.

    A schema already at the newest revision is left alone without taking the
    lock (nothing is written: this is how a read-only state directory can be
    read). A database made before the migrations existed (tables, no version
    table) is stamped with the first revision, whose schema it has, then upgraded.
    """
    if schema_at_head(engine):
        return
    reason = read_only_reason(engine)
    if reason:
        raise SchemaNotWritable(f"its schema must be upgraded but it cannot be written: "
                                f"{reason}")
    from alembic import command as alembic_command  # only when the schema changes

    with schema_lock(engine), engine.begin() as connection:
        tables = set(sa.inspect(connection).get_table_names())
        config = _alembic_config(connection)
        if "volumes" in tables and migrations.VERSION_TABLE not in tables:
            alembic_command.stamp(config, migrations.FIRST_REVISION)
        alembic_command.upgrade(config, "head")
