"""TaskFlow's SQLAlchemy persistence, sharing the service's database engine."""

from __future__ import annotations

import threading

from sqlalchemy.engine import Engine
from taskflow.persistence.backends import impl_sqlalchemy


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


def open_backend(engine: Engine) -> SharedConnectionBackend:
    """The backend, its schema created or upgraded to the installed TaskFlow's."""
    backend = SharedConnectionBackend(engine)
    backend.get_connection().upgrade()
    return backend
