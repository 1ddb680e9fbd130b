"""The flow runner: builds, resumes and runs migration flows, and makes sure each one ends.

Flows run on TaskFlow's parallel engine in worker threads, persisted in SQL so
that recovery (engine/recovery.py, which uses this runner alone) can resume
them in another process.
"""

from __future__ import annotations

import concurrent.futures
import contextlib

import taskflow.engines
from oslo_log import log as logging
from taskflow import exceptions as tf_exceptions
from taskflow.listeners.timing import EventTimeListener
from taskflow.persistence import models as tf_models

from volmigrate.db import models
from volmigrate.db import session as db_session
from volmigrate.engine import crash_hook, persistence
from volmigrate.engine.context import ServiceContext
from volmigrate.engine.exceptions import ConfigError
from volmigrate.flows import cases, outcome
from volmigrate.flows import constants as flow_c

LOG = logging.getLogger(__name__)

UNRECORDED_RESULT = "the migration flow ended without recording a result (see the log)"


class FlowRunner:
    """Executors and flow persistence of one started service."""

    def __init__(self, ctx: ServiceContext, workers: int) -> None:
        self.ctx = ctx
        self.tf_backend = self._open_flow_persistence()
        # One long-lived executor for every engine: an engine that makes its
        # own stalls about a second shutting it down (DESIGN.md, "Lessons").
        self.task_executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=4 * workers, thread_name_prefix="migration-task")
        self._flows = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="migration-flow")
        self._futures: dict[str, concurrent.futures.Future] = {}

    def _open_flow_persistence(self):
        url = self.ctx.conf.taskflow.persistence_connection
        if not url:
            return persistence.open_backend(self.ctx.connect().engine)
        try:
            return persistence.open_backend(db_session.create_engine(url))
        except Exception as exc:
            raise ConfigError(f"cannot open [taskflow] persistence_connection: {exc}") from exc

    def future(self, migration_id: str) -> concurrent.futures.Future | None:
        return self._futures.get(migration_id)

    def shutdown(self, wait: bool) -> None:
        self._flows.shutdown(wait=wait)
        self.task_executor.shutdown(wait=wait)

    def drain(self) -> None:
        """Let every flow that runs or waits to run end; accept no new one."""
        self._flows.shutdown(wait=True)

    # -- flows ---------------------------------------------------------------
    def launch(self, migration: dict) -> None:
        """Run a new flow for an accepted (or orphaned) migration.

        The flow is built and persisted in the flow's own thread, not the
        caller's: that is most of what accepting a migration cost (about 18 of
        22 ms of CPU), and the API answers the request before it. The flow is
        recorded (``flow_uuid``) before its first task runs, so recovery can
        tell a migration whose process died before it began (see recovery.py).
        """
        self._futures[migration["id"]] = self._flows.submit(self._build_and_run, migration)

    def _build_and_run(self, migration: dict) -> None:
        try:
            engine = self._build(migration)
        except Exception:
            LOG.exception("Building the flow of migration %s failed", migration["id"])
            self._ensure_finished(migration["id"])
            return
        self._run(migration["id"], engine)

    def _build(self, migration: dict):
        store = {
            flow_c.MIGRATION_ID: migration["id"],
            flow_c.VOLUME_ID: migration["volume_id"],
            flow_c.SOURCE_HOST: migration["source_host"],
            flow_c.DEST_HOST: migration["dest_host"],
            flow_c.VOLUME_SIZE: migration["bytes_total"],
        }
        # One logbook per migration, named after it, so its history is easy to find.
        book = tf_models.LogBook(f"migration-{migration['id']}")
        self.tf_backend.get_connection().save_logbook(book)
        engine = taskflow.engines.load_from_factory(
            cases.get_flow, factory_kwargs={"case": migration["case"]}, store=store,
            book=book, backend=self.tf_backend, engine="parallel",
            executor=self.task_executor)
        self.ctx.connect().update_migration(migration["id"],
                                            {"flow_uuid": engine.storage.flow_uuid})
        return engine

    def flow_detail(self, flow_uuid: str):
        """The persisted flow detail, or None when it is missing from the persistence."""
        try:
            return self.tf_backend.get_connection().get_flow_details(flow_uuid)
        except tf_exceptions.NotFound:
            return None

    def resume(self, migration_id: str, flow_detail) -> None:
        """Run a persisted flow again: finished atoms are skipped, the rest re-run."""
        engine = taskflow.engines.load_from_detail(
            flow_detail, backend=self.tf_backend, engine="parallel",
            executor=self.task_executor)
        self._submit(migration_id, engine)

    def _submit(self, migration_id: str, engine) -> None:
        self._futures[migration_id] = self._flows.submit(self._run, migration_id, engine)

    def _run(self, migration_id: str, engine) -> None:
        try:
            # Timestamps of every atom's states, kept with the flow for inspection.
            listeners = [EventTimeListener(engine)] + crash_hook.listeners_for(engine)
            with contextlib.ExitStack() as stack:
                for listener in listeners:
                    stack.enter_context(listener)
                engine.run()
        except Exception as exc:
            # The flow's reverts have recorded the error; this is the log of it.
            LOG.debug("Flow of migration %s ended with %r", migration_id, exc)
        finally:
            self._ensure_finished(migration_id)

    def _ensure_finished(self, migration_id: str) -> None:
        """Last line of defence: never leave a volume migrating without a flow."""
        migration = self.ctx.connect().get_migration(migration_id)
        if migration is None or migration["state"] not in models.STATES_UNFINISHED:
            return
        # When this fails too (the database is full or gone), the error reaches
        # whoever waits for the flow: it is the one thing that can explain it.
        outcome.record_failure(migration_id, UNRECORDED_RESULT)
