"""TaskFlow's SQLAlchemy persistence, sharing the service's database engine."""

from __future__ import annotations

import functools
import os
import threading

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from taskflow.persistence.backends import impl_sqlalchemy
from taskflow.persistence.backends.sqlalchemy import migration as tf_migration
from taskflow.persistence.backends.sqlalchemy import tables as tf_tables

from volmigrate.db import session as db_session
from volmigrate.engine.exceptions import ConfigError


class SharedConnectionBackend(impl_sqlalchemy.SQLAlchemyBackend):
    """Hands out one Connection instead of a new one per atom save.

    Each new TaskFlow Connection rebuilds its table metadata, which cost about
    350 ms per migration flow on SQLite here (DESIGN.md, "Lessons").
    The Connection keeps no state but the engine, so sharing it is safe.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__({"connection": str(engine.url)}, engine=engine)
        self._shared: impl_sqlalchemy.Connection | None = None
        self._shared_lock = threading.Lock()

    def get_connection(self) -> impl_sqlalchemy.Connection:
        with self._shared_lock:
            if self._shared is None:
                self._shared = super().get_connection()
            return self._shared


def schema_at_head(engine: Engine) -> bool:
    """Whether TaskFlow's tables are as the installed TaskFlow makes them (reads only).

    On SQLite TaskFlow creates its tables from its metadata and never alters
    them (no migrations there): present means current. Elsewhere it runs its
    alembic migrations, whose version table says.
    """
    with engine.connect() as connection:
        if engine.url.get_backend_name() == "sqlite":
            wanted = set(tf_tables.fetch(sa.MetaData())._fields)
            return wanted <= set(sa.inspect(connection).get_table_names())
        context = MigrationContext.configure(connection)
        return frozenset(context.get_current_heads()) == _taskflow_heads()


@functools.cache
def _taskflow_heads() -> frozenset[str]:
    script_location = os.path.join(os.path.dirname(tf_migration.__file__), "alembic")
    return frozenset(ScriptDirectory(script_location).get_heads())


def open_backend(engine: Engine) -> SharedConnectionBackend:
    """The backend, its schema created or upgraded to the installed TaskFlow's.

    A schema already current is left alone (nothing written, no lock file:
    a read-only database can be inspected). Otherwise the upgrade holds the
    same lock as ours on that database file, so that commands started at once
    on a fresh state directory do not all create TaskFlow's tables.
    """
    backend = SharedConnectionBackend(engine)
    if schema_at_head(engine):
        return backend
    reason = db_session.read_only_reason(engine)
    if reason:
        raise ConfigError(f"cannot create TaskFlow's tables in the database "
                          f"{engine.url.render_as_string(hide_password=True)}: it cannot "
                          f"be written: {reason}")
    with db_session.schema_lock(engine):
        backend.get_connection().upgrade()
    return backend
