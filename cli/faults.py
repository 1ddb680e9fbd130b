"""The one line a command prints when it fails, and what it logs.

A refused request (a VolmigrateError) says why in its own words. The state
database failing (a full or read-only filesystem, a lost database server) is
no internal error: the line names the database, gives the database's own
words, and says which migrations of this command were left for `volmigrate
recover` (it cannot record their rollback, but recover can, later). Anything
else is an internal error: its type and message, and where the traceback was
logged. Details always go to the log, never to the terminal.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable

import sqlalchemy.exc as sa_exc
from oslo_config import cfg
from oslo_log import log as logging
from sqlalchemy.engine import make_url

from volmigrate.cli import output
from volmigrate.engine import MigrationService, opts
from volmigrate.engine.exceptions import VolmigrateError

LOG = logging.getLogger(__name__)

_DATABASE_ERRORS = (sa_exc.OperationalError, sqlite3.OperationalError)
# Words of a database that can be read but not written.
_CANNOT_WRITE = ("full", "readonly", "read-only", "no space")
_ENDED = ("success", "error")


def database_error(exc: BaseException) -> BaseException | None:
    """The database error behind `exc` (raised, or wrapped by TaskFlow or us), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, _DATABASE_ERRORS):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _database_words(exc: BaseException) -> str:
    """The database's own message, without SQLAlchemy's statement and links."""
    orig = getattr(exc, "orig", None)
    lines = str(orig if orig is not None else exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _database_url(conf: cfg.ConfigOpts) -> str:
    try:
        return make_url(opts.database_url(conf)).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: its own error says so elsewhere
        return "(the configured [database] connection)"


def _left_for_recover(svc: MigrationService) -> list[dict] | None:
    """Migrations this process runs that have not ended (None: cannot tell)."""
    if svc.tf_backend is None:  # never started: it ran no migration
        return []
    try:
        return [m for m in svc.list_migrations()
                if m["owner"] == svc.identity and m["state"] not in _ENDED]
    except Exception:
        LOG.exception("Listing the migrations left unfinished failed")
        return None


def database_line(exc: BaseException, conf: cfg.ConfigOpts, svc: MigrationService) -> str:
    words = _database_words(exc)
    writing = any(w in words.lower() for w in _CANNOT_WRITE)
    line = (f"volmigrate: cannot {'write' if writing else 'use'} the state database "
            f"{_database_url(conf)}: {words}")
    again = "the database can be written again" if writing else "the database works again"
    left = _left_for_recover(svc)
    if left is None:
        line += (f"; a migration this command started may be left unfinished: run "
                 f"`volmigrate recover` once {again}")
    elif left:
        which = ", ".join(f"{m['id']} of volume {m['volume_id']}" for m in left)
        line += (f"; migration {which} was left for `volmigrate recover`: run it once "
                 f"{again}")
    return line


def log_location(conf: cfg.ConfigOpts) -> str:
    """Where oslo.log writes, as configured (the rule of oslo.log's file handler)."""
    if conf.log_file:
        return os.path.join(conf.log_dir, conf.log_file) if conf.log_dir else conf.log_file
    if conf.log_dir:
        return os.path.join(conf.log_dir, "volmigrate.log")
    if conf.use_journal:
        return "the journal"
    return "the log on stderr" if conf.use_stderr else "the log"


def report(exc: Exception, conf: cfg.ConfigOpts, svc: MigrationService, logging_ready: bool,
           setup_logging: Callable[[cfg.ConfigOpts], None]) -> int:
    """Print the one line for a failed command, log the details; the exit status (1)."""
    failed = database_error(exc)
    if failed is not None:
        if logging_ready:
            LOG.error("The state database failed", exc_info=exc)
        output.error(database_line(failed, conf, svc))
        return 1
    if isinstance(exc, VolmigrateError):
        output.error(f"volmigrate: {exc}")
        return 1
    if not logging_ready:
        try:
            setup_logging(conf)
            logging_ready = True
        except Exception:  # noqa: S110 - the line below is all that can be said
            pass
    where = ""
    if logging_ready:
        LOG.error("Internal error", exc_info=exc)
        where = f" (details in {log_location(conf)})"
    output.error(f"volmigrate: internal error: {type(exc).__name__}: {exc}{where}")
    return 1
