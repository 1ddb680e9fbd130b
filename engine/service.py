"""MigrationService: the API a volume manager embeds.

A request is validated and accepted (or rejected) synchronously, with a
conditional UPDATE so that concurrent requests for one volume cannot both
win; the migration itself runs as a TaskFlow flow on the parallel engine in
a worker thread, persisted in the service database.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import threading
import time

import taskflow.engines
from oslo_config import cfg
from oslo_log import log as logging
from taskflow.listeners.timing import EventTimeListener
from taskflow.persistence import models as tf_models

from volmigrate.db import api as db_api
from volmigrate.db import models
from volmigrate.db import session as db_session
from volmigrate.drivers.base import LOCAL_PATH_ACCESS, VolumeDriver
from volmigrate.drivers.exceptions import DriverError
from volmigrate.engine import (backends, crash_hook, notifications, opts, ownership,
                               persistence, recovery)
from volmigrate.engine.exceptions import (
    BackendError,
    ConfigError,
    InvalidInput,
    InvalidVolumeState,
    MigrationNotFound,
    VolumeLocked,
    VolumeNotFound,
)
from volmigrate.engine.hosts import Host, parse_host
from volmigrate.engine.units import parse_size, parse_volume_size
from volmigrate.flows import constants as flow_c
from volmigrate.flows import cases, runtime
from volmigrate.flows.reporting import percent_of
from volmigrate.flows.volume_tasks import identity_text, volume_ref

LOG = logging.getLogger(__name__)

ACCEPTED_MESSAGE = ("Your migration request has been received. Please check migration "
                    "status and the server log to see more information.")
REJECTED_PREFIX = "Your migration request failed to process: "

# How often the service looks for aborts requested by other processes.
ABORT_POLL_SECONDS = 0.25
# How long an attach waits for the migration it aborted to finish reverting.
ABORT_WAIT_SECONDS = 300.0


@dataclasses.dataclass(frozen=True)
class MigrationResponse:
    """The answer to a migrate request, given without waiting for the migration."""

    accepted: bool
    message: str
    migration_id: str | None = None
    reason: str | None = None


class MigrationService:
    """Volumes, migrations and their flows for one node.

    ``connect()`` opens only the database (enough to read volumes, migrations
    and progress from any process); ``start()`` also loads the drivers and
    runs migrations.
    """

    def __init__(self, conf: cfg.ConfigOpts | None = None) -> None:
        self.conf = conf if conf is not None else cfg.CONF
        opts.register(self.conf)
        self.db: db_api.Database | None = None
        self.drivers: dict[str, VolumeDriver] = {}
        self._runtime: runtime.Runtime | None = None
        self._futures: dict[str, concurrent.futures.Future] = {}
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.identity = ownership.identity()
        self.tf_backend = None
        self.task_executor: concurrent.futures.ThreadPoolExecutor | None = None

    # -- lifecycle ---------------------------------------------------------
    def connect(self) -> None:
        if self.db is not None:
            return
        opts.validate(self.conf)
        try:
            engine = db_session.create_engine(opts.database_url(self.conf))
            db_session.upgrade_schema(engine)
        except Exception as exc:
            raise ConfigError(f"cannot open the database {opts.database_url(self.conf)}: "
                              f"{exc}") from exc
        self.db = db_api.Database(engine)

    def start(self, recover: bool = True) -> None:
        """Load the drivers and run migrations; with `recover`, take over the
        unfinished migrations of dead processes first (see engine/recovery.py)."""
        if self._runtime is not None:
            return
        opts.validate(self.conf)
        drivers = backends.load_drivers(self.conf)  # a bad backend stops us before the db
        self.connect()
        blocksize = parse_size(self.conf.volume_dd_blocksize)
        settings = runtime.Settings(
            progress_interval=self.conf.migration_progress_report_interval,
            bps_limit=self.conf.volume_copy_bps_limit,
            dd_blocksize=blocksize,
            hidden_project=self.conf.internal_project_id,
            checkpoint_bytes=parse_size(self.conf.migration_checkpoint_size),
            copy_method=self.conf.copy_method,
            verify=self.conf.migration_verify,
        )
        self.identity = ownership.identity()  # this process, even after a fork
        self.tf_backend = self._open_flow_persistence()
        rt = runtime.Runtime(db=self.db, drivers=drivers,
                             notifier=notifications.make_notifier(self.conf),
                             settings=settings)
        runtime.install(rt)
        self.drivers, self._runtime = drivers, rt
        workers = self.conf.migration_workers
        # One long-lived executor for every engine: an engine that makes its
        # own stalls about a second shutting it down (DESIGN.md, "Lessons").
        self.task_executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=4 * workers, thread_name_prefix="migration-task")
        self._runner = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="migration-flow")
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch_aborts, name="abort-watcher",
                                         daemon=True)
        self._watcher.start()
        LOG.info("volmigrate service started on %s with backends %s",
                 self.conf.host, ", ".join(drivers))
        if recover:
            self.recover()

    def _open_flow_persistence(self):
        url = self.conf.taskflow.persistence_connection
        if not url:
            return persistence.open_backend(self.db.engine)
        try:
            return persistence.open_backend(db_session.create_engine(url))
        except Exception as exc:
            raise ConfigError(f"cannot open [taskflow] persistence_connection: {exc}") from exc

    def recover(self) -> list[dict]:
        """Resume or roll back the migrations no live process runs; say what was done.

        Idempotent: a second call finds nothing to do.
        """
        self._require_started()
        actions = recovery.recover(self)
        for action in actions:
            LOG.info("Recovery of migration %(migration_id)s (volume %(volume_id)s): "
                     "%(action)s, %(detail)s", action)
        return actions

    def clean_up_leftovers(self) -> list[dict]:
        """Remove what finished migrations left behind; say what was removed and what was not.

        A roll-back that could not delete a destination (its backend disabled,
        the delete failed) keeps the hidden row, status error, as the record;
        this deletes its data through the driver, then the row, once the
        backend allows. `recover()` does it too. Never touches a running
        migration; safe from several processes at once.
        """
        self._require_started()
        results = recovery.clean_up_leftovers(self)
        for result in results:
            LOG.info("Leftover of migration %(migration_id)s (volume %(volume_id)s) on "
                     "%(host)s: %(action)s, %(detail)s", result)
        return results

    def stop(self, wait: bool = True) -> None:
        """Stop; with `wait`, let running migrations end first."""
        if self._runtime is None:
            return
        if wait:
            self._runner.shutdown(wait=True)
        self._stop.set()
        self._watcher.join()
        self._runner.shutdown(wait=wait)
        self.task_executor.shutdown(wait=wait)
        runtime.uninstall()
        self._runtime = None

    def __enter__(self) -> "MigrationService":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _require_started(self) -> runtime.Runtime:
        if self._runtime is None:
            raise RuntimeError("MigrationService.start() has not been called")
        return self._runtime

    def _require_db(self) -> db_api.Database:
        if self.db is None:
            self.connect()
        return self.db

    # -- hosts ---------------------------------------------------------------
    def _resolve_host(self, text: str) -> tuple[Host, VolumeDriver]:
        """Parse and check a host against this node; fill in the default pool."""
        try:
            host = parse_host(text)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        if host.node != self.conf.host:
            raise InvalidInput(f"host {text} is unknown: this service serves node "
                               f"{self.conf.host}")
        driver = self.drivers.get(host.backend)
        if driver is None:
            raise InvalidInput(f"host {text} is unknown: no enabled backend "
                               f"{host.backend!r} (enabled: {', '.join(self.drivers)})")
        pools = driver.pools()
        if host.pool is None:
            host = host.with_pool(driver.default_pool)
        elif host.pool not in pools:
            raise InvalidInput(f"host {text} is unknown: backend {host.backend} has no pool "
                               f"{host.pool!r} (pools: {', '.join(pools)})")
        return host, driver

    # -- volumes -------------------------------------------------------------
    def create_volume(self, size: str | int, host: str, name: str | None = None,
                      project_id: str | None = None) -> dict:
        """Create an empty (zero-filled, sparse where possible) volume."""
        self._require_started()
        try:
            size_bytes = parse_volume_size(size)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        if name is not None and (not isinstance(name, str) or len(name) > 255):
            raise InvalidInput("volume name must be a string of at most 255 characters")
        if project_id == self.conf.internal_project_id:
            raise InvalidInput(f"project {project_id} is reserved for internal volumes")
        resolved, driver = self._resolve_host(host)
        row = self.db.create_volume({
            "name": name, "size": size_bytes, "host": str(resolved),
            "status": models.STATUS_CREATING, "project_id": project_id,
        })
        try:
            update = driver.create_volume(volume_ref(row))
        except DriverError as exc:
            self.db.update_volume(row["id"], {"status": models.STATUS_ERROR})
            raise BackendError(f"creating volume {row['id']} on {resolved} failed: "
                               f"{exc}") from exc
        try:
            identity = identity_text(driver, dict(row, **update))
        except DriverError as exc:
            self.db.update_volume(row["id"], {"status": models.STATUS_ERROR})
            raise BackendError(f"volume {row['id']} was created on {resolved} but cannot be "
                               f"found there: {exc}") from exc
        self.db.update_volume(row["id"], dict(update, status=models.STATUS_AVAILABLE,
                                              provider_id=identity))
        LOG.info("Created volume %s (%d bytes) on %s", row["id"], size_bytes, resolved)
        return self.db.get_volume(row["id"])

    def get_volume(self, volume_id: str, include_hidden: bool = False) -> dict:
        volume = self._require_db().get_volume(str(volume_id))
        if volume is None or (not include_hidden
                              and volume["project_id"] == self.conf.internal_project_id):
            raise VolumeNotFound(volume_id)
        return volume

    def list_volumes(self, migration_status: str | None = None,
                     include_hidden: bool = False) -> list[dict]:
        """Volumes, optionally filtered by migration_status ("none" = never migrated)."""
        allowed = models.MIGRATION_STATUSES + ("none",)
        if migration_status is not None and migration_status.lower() not in allowed \
                and not migration_status.startswith(models.TARGET_PREFIX):
            raise InvalidInput(f"unknown migration status {migration_status!r} "
                               f"(one of: {', '.join(allowed)})")
        return self._require_db().list_volumes(
            migration_status=migration_status, include_hidden=include_hidden,
            hidden_project=self.conf.internal_project_id)

    def delete_volume(self, volume_id: str) -> None:
        self._require_started()
        volume = self.get_volume(volume_id)
        # Before the volume is marked deleting: a backend not enabled here must
        # leave it as it was, not stuck `deleting`.
        driver = self._driver_of(volume)
        deletable = (models.STATUS_AVAILABLE, models.STATUS_ERROR)
        if not self.db.update_volume(volume["id"], {"status": models.STATUS_DELETING}, {
                "status": deletable, "attach_status": models.ATTACH_DETACHED,
                "migration_status": db_api.Not(*models.MIGRATION_RUNNING_STATES)}):
            volume = self.get_volume(volume_id)
            raise InvalidVolumeState(self._why_busy(volume, "deleted"))
        try:
            driver.delete_volume(volume_ref(volume))
        except DriverError as exc:
            self.db.update_volume(volume["id"], {"status": models.STATUS_ERROR})
            raise BackendError(f"deleting volume {volume_id} failed: {exc}") from exc
        self.db.delete_volume_row(volume["id"])
        LOG.info("Deleted volume %s", volume_id)

    def _driver_of(self, volume: dict) -> VolumeDriver:
        backend = parse_host(volume["host"]).backend
        try:
            return self.drivers[backend]
        except KeyError:
            raise BackendError(f"volume {volume['id']} is on backend {backend}, which this "
                               f"service does not have enabled") from None

    def _why_busy(self, volume: dict, action: str) -> str:
        orphan = self._orphaned_migration(volume)
        if orphan:
            return f"volume {volume['id']} cannot be {action}: {orphan}"
        if volume["migration_status"] in models.MIGRATION_RUNNING_STATES:
            return (f"volume {volume['id']} is being migrated (migration_status "
                    f"{volume['migration_status']}) and cannot be {action}")
        if volume["attach_status"] == models.ATTACH_ATTACHED:
            return f"volume {volume['id']} is attached (status {volume['status']}); detach it first"
        return f"volume {volume['id']} is {volume['status']} and cannot be {action}"

    def _orphaned_migration(self, volume: dict) -> str | None:
        """Why the volume is busy when the process running its migration is gone.

        Such a migration (its command killed, its host crashed) holds the volume
        `migrating` (and `maintenance`) until `volmigrate recover` resumes or
        rolls it back: a refusal must say so rather than "try later".
        """
        busy = (volume["migration_status"] in models.MIGRATION_RUNNING_STATES
                or volume["status"] == models.STATUS_MAINTENANCE)
        if not busy or self.db is None:
            return None
        migration = self.db.latest_migration(volume["id"])
        if (migration is None or migration["state"] not in models.STATES_UNFINISHED
                or migration["owner"] == self.identity):
            return None
        stale_after = 6 * self.conf.migration_heartbeat_interval  # as recovery judges it
        if ownership.owner_alive(migration["owner"], migration["heartbeat_at"], stale_after):
            return None
        return (f"its migration {migration['id']} (migration_status "
                f"{volume['migration_status']}, status {volume['status']}) was left "
                f"unfinished by {ownership.describe(migration['owner'])}, which is gone: run `volmigrate recover` to resume "
                f"or roll it back")

    # -- migrations ----------------------------------------------------------
    def migrate_volume(self, volume_id: str, host: str, lock_volume: bool = False,
                       force_host_copy: bool = False) -> MigrationResponse:
        """Validate and accept a migration; it runs in the background."""
        self._require_started()
        try:
            migration = self._accept(volume_id, host, lock_volume, force_host_copy)
        except (InvalidInput, InvalidVolumeState, VolumeNotFound, BackendError) as exc:
            LOG.warning("Migration of volume %s to %s rejected: %s", volume_id, host, exc)
            return MigrationResponse(False, REJECTED_PREFIX + str(exc), reason=str(exc))
        self.launch_flow(migration)
        LOG.info("Migration %s of volume %s from %s to %s accepted (lock=%s)",
                 migration["id"], volume_id, migration["source_host"],
                 migration["dest_host"], lock_volume)
        return MigrationResponse(True, ACCEPTED_MESSAGE, migration_id=migration["id"])

    def _accept(self, volume_id, host, lock_volume, force_host_copy) -> dict:
        if not isinstance(lock_volume, bool) or not isinstance(force_host_copy, bool):
            raise InvalidInput("lock_volume and force_host_copy must be true or false")
        volume = self.get_volume(volume_id)
        dest, dest_driver = self._resolve_host(host)
        source_driver = self._driver_of(volume)
        if str(dest) == volume["host"]:
            raise InvalidInput(f"volume {volume_id} is already on host {dest}")
        orphan = self._orphaned_migration(volume)
        if orphan:
            raise InvalidVolumeState(f"volume {volume_id} cannot be migrated: {orphan}")
        if volume["migration_status"] in models.MIGRATION_RUNNING_STATES:
            raise InvalidVolumeState(
                f"volume {volume_id} is already being migrated (migration_status "
                f"{volume['migration_status']})")
        if volume["status"] != models.STATUS_AVAILABLE:
            raise InvalidVolumeState(
                f"volume {volume_id} is {volume['status']}: only available volumes can be "
                f"migrated")
        case = self._choose_case(volume, dest, source_driver, dest_driver, force_host_copy)
        values = {"migration_status": models.MIGRATION_STARTING}
        if lock_volume:
            values["status"] = models.STATUS_MAINTENANCE
        migration = self.db.accept_migration(
            volume["id"], values,
            {"status": models.STATUS_AVAILABLE, "attach_status": models.ATTACH_DETACHED,
             "host": volume["host"],
             "migration_status": db_api.Not(*models.MIGRATION_RUNNING_STATES)},
            {"source_host": volume["host"], "dest_host": str(dest),
             "lock_volume": lock_volume, "force_host_copy": force_host_copy,
             "case": case, "state": models.STATE_PENDING,
             "previous_status": volume["status"], "bytes_total": volume["size"],
             "owner": self.identity, "heartbeat_at": models.utcnow()})
        if migration is None:  # another request changed the volume since we read it
            now = self.get_volume(volume_id)
            if now["migration_status"] in models.MIGRATION_RUNNING_STATES:
                raise InvalidVolumeState(f"volume {volume_id} is already being migrated "
                                         f"(migration_status {now['migration_status']})")
            raise InvalidVolumeState(f"volume {volume_id} is {now['status']}: only "
                                     f"available volumes can be migrated")
        return migration

    @staticmethod
    def _choose_case(volume: dict, dest: Host, source_driver: VolumeDriver,
                     dest_driver: VolumeDriver, force_host_copy: bool) -> str:
        """Driver-assisted when the backend can move the volume itself, else a host copy."""
        if (not force_host_copy and source_driver is dest_driver
                and parse_host(volume["host"]).backend == dest.backend):
            try:
                movable = source_driver.can_migrate_within_backend(volume_ref(volume),
                                                                   dest.pool)
            except DriverError as exc:
                raise BackendError(f"backend {dest.backend} cannot tell whether it can move "
                                   f"volume {volume['id']}: {exc}") from exc
            if movable:
                return flow_c.CASE_DRIVER_ASSISTED
        local = (source_driver.access_kind() in LOCAL_PATH_ACCESS
                 and dest_driver.access_kind() in LOCAL_PATH_ACCESS)
        return flow_c.CASE_GENERIC_DD if local else flow_c.CASE_GENERIC_FILE_IO

    def launch_flow(self, migration: dict) -> None:
        """Build, persist and run a new flow for an accepted (or orphaned) migration."""
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
        self.db.update_migration(migration["id"], {"flow_uuid": engine.storage.flow_uuid})
        self.run_engine(migration["id"], engine)

    def run_engine(self, migration_id: str, engine) -> None:
        """Run a (new or resumed) migration flow in the background."""
        self._futures[migration_id] = self._runner.submit(self._run_flow, migration_id, engine)

    def _run_flow(self, migration_id: str, engine) -> None:
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
        migration = self.db.get_migration(migration_id)
        if migration is None or migration["state"] not in models.STATES_UNFINISHED:
            return
        reason = "the migration flow ended without recording a result (see the log)"
        values = {"migration_status": models.MIGRATION_ERROR}
        if migration["lock_volume"]:
            values["status"] = migration["previous_status"]
        self.db.update_volume(migration["volume_id"], values)
        self.db.update_migration(migration_id, {
            "state": models.STATE_ERROR, "error": reason, "finished_at": models.utcnow()})
        LOG.error("Migration %s: %s", migration_id, reason)
        if self._runtime is not None:
            self._runtime.forget(migration_id)

    def get_migration(self, migration_id: str) -> dict:
        migration = self._require_db().get_migration(migration_id)
        if migration is None:
            raise MigrationNotFound(migration_id)
        return migration

    def list_migrations(self, volume_id: str | None = None) -> list[dict]:
        return self._require_db().list_migrations(volume_id=volume_id)

    def _migration_for(self, ref: str) -> dict:
        """A migration by its id, or the latest migration of a volume."""
        db = self._require_db()
        migration = db.get_migration(ref) or db.latest_migration(ref)
        if migration is None:
            raise MigrationNotFound(ref)
        return migration

    def wait(self, ref: str, timeout: float | None = None) -> dict:
        """Wait for a migration (by id, or a volume's latest) to end; return its row.

        Works for migrations running in another process too, through the database.
        """
        migration = self._migration_for(ref)
        future = self._futures.get(migration["id"])
        deadline = None if timeout is None else time.monotonic() + timeout
        if future is not None:
            try:
                future.result(timeout=timeout)
            except concurrent.futures.TimeoutError:
                raise TimeoutError(f"migration {migration['id']} still running") from None
            return self.get_migration(migration["id"])
        while True:
            migration = self.get_migration(migration["id"])
            if migration["state"] not in models.STATES_UNFINISHED:
                return migration
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"migration {migration['id']} still running")
            time.sleep(0.1)

    def get_migration_progress(self, volume_id: str) -> dict:
        """Progress of the volume's latest migration.

        A migration running in this service is asked live (dd's fdinfo or the
        file position); otherwise the last stored report is returned.
        """
        volume = self.get_volume(volume_id)
        migration = self._require_db().latest_migration(volume["id"])
        if migration is None:
            raise MigrationNotFound(f"volume {volume_id} (never migrated)")
        copied = max(migration["progress_bytes"], migration["bytes_copied"])
        total = migration["bytes_total"]
        live = False
        if self._runtime is not None and migration["id"] in self._runtime.trackers:
            position = self._runtime.trackers[migration["id"]].position()
            if position is not None:
                copied, live = max(position, copied), True
        if migration["state"] == models.STATE_SUCCESS:
            copied = total
        return {
            "volume_id": volume["id"], "migration_id": migration["id"],
            "migration_status": volume["migration_status"], "state": migration["state"],
            "source_host": migration["source_host"], "destination_host": migration["dest_host"],
            "percent": percent_of(copied, total), "bytes_copied": copied,
            "bytes_total": total, "bytes_durable": migration["bytes_copied"],
            "live": live, "error": migration["error"],
            "progress_at": migration["progress_at"], "started_at": migration["started_at"],
            "finished_at": migration["finished_at"],
        }

    # -- attach / detach -----------------------------------------------------
    def _running_migration(self, volume: dict) -> dict | None:
        if volume["migration_status"] not in models.MIGRATION_RUNNING_STATES:
            return None
        migration = self.db.latest_migration(volume["id"])
        if migration and migration["state"] in models.STATES_UNFINISHED:
            return migration
        return None

    def _abort(self, migration: dict, reason: str) -> None:
        """Ask the migration to stop, wherever it runs, and wait until it has ended."""
        self.db.update_migration(migration["id"], {"abort_reason": reason},
                                 {"abort_reason": None})
        if self._runtime is not None and migration["id"] in self._runtime.trackers:
            self._runtime.trackers[migration["id"]].abort(reason)
        LOG.warning("Aborting migration %s: %s", migration["id"], reason)
        try:
            self.wait(migration["id"], timeout=ABORT_WAIT_SECONDS)
        except TimeoutError:
            raise InvalidVolumeState(
                f"the migration {migration['id']} of volume {migration['volume_id']} was "
                f"asked to abort but is still running; try again later") from None

    def abort_migration(self, ref: str, reason: str = "aborted by the administrator") -> dict:
        """Stop a running migration (by id or volume id) and wait for its rollback."""
        migration = self._migration_for(ref)
        if migration["state"] not in models.STATES_UNFINISHED:
            raise InvalidVolumeState(f"migration {migration['id']} is not running "
                                     f"(state {migration['state']})")
        if migration["case"] == flow_c.CASE_DRIVER_ASSISTED:
            raise InvalidVolumeState(
                f"migration {migration['id']} is a move inside backend "
                f"{parse_host(migration['source_host']).backend}, which cannot be stopped "
                f"half way; the volume stays usable while it runs")
        self._abort(migration, reason)
        return self.get_migration(migration["id"])

    def _watch_aborts(self) -> None:
        """Pick up aborts asked by other processes; beat the heart of our migrations."""
        last_beat = 0.0
        while not self._stop.wait(ABORT_POLL_SECONDS):
            rt = self._runtime
            if rt is None:
                return
            if time.monotonic() - last_beat >= self.conf.migration_heartbeat_interval:
                last_beat = time.monotonic()
                try:
                    self.db.heartbeat(self.identity)
                except Exception:
                    LOG.exception("Heartbeat failed")
            for migration_id, tracker in list(rt.trackers.items()):
                if tracker.abort_event.is_set():
                    continue
                try:
                    row = self.db.get_migration(migration_id)
                except Exception:  # the next round will tell
                    LOG.exception("Checking migration %s for an abort failed", migration_id)
                    continue
                if row and row["abort_reason"]:
                    tracker.abort(row["abort_reason"])

    def attach_volume(self, volume_id: str) -> dict:
        """Mark the volume attached; an unlocked migration is aborted first."""
        return self._attach_or_detach(volume_id, attach=True)

    def detach_volume(self, volume_id: str) -> dict:
        return self._attach_or_detach(volume_id, attach=False)

    def _attach_or_detach(self, volume_id: str, attach: bool) -> dict:
        action = "attach" if attach else "detach"
        volume = self.get_volume(volume_id)
        orphan = self._orphaned_migration(volume)
        if orphan:  # nobody would answer an abort: do not wait for one
            raise InvalidVolumeState(f"volume {volume_id} cannot be {action}ed: {orphan}")
        if volume["status"] == models.STATUS_MAINTENANCE:
            raise VolumeLocked(
                f"volume {volume_id} is locked by a running migration (status maintenance): "
                f"{action} is not allowed until the migration ends")
        if attach:
            values = {"status": models.STATUS_IN_USE, "attach_status": models.ATTACH_ATTACHED}
            expected = {"status": models.STATUS_AVAILABLE,
                        "attach_status": models.ATTACH_DETACHED}
        else:
            values = {"status": models.STATUS_AVAILABLE, "attach_status": models.ATTACH_DETACHED}
            expected = {"status": models.STATUS_IN_USE,
                        "attach_status": models.ATTACH_ATTACHED}
            if volume["attach_status"] != models.ATTACH_ATTACHED:
                raise InvalidVolumeState(f"volume {volume_id} is not attached")
        expected["migration_status"] = db_api.Not(*models.MIGRATION_RUNNING_STATES)
        for _ in range(3):
            migration = self._running_migration(volume)
            condition = dict(expected)
            if migration is not None and migration["case"] == flow_c.CASE_DRIVER_ASSISTED:
                # The backend moves the volume online and cannot stop half way:
                # the volume stays usable and the migration goes on.
                del condition["migration_status"]
            elif migration is not None:
                self._abort(migration, f"aborted: {action} of volume {volume_id} was "
                                       f"requested during the migration")
            if self.db.update_volume(volume["id"], values, condition):
                LOG.info("Volume %s %sed", volume_id, action)
                return self.get_volume(volume_id)
            volume = self.get_volume(volume_id)
            if volume["status"] == models.STATUS_MAINTENANCE:
                raise VolumeLocked(
                    f"volume {volume_id} is locked by a running migration (status "
                    f"maintenance): {action} is not allowed until the migration ends")
            if volume["migration_status"] not in models.MIGRATION_RUNNING_STATES:
                break
        raise InvalidVolumeState(f"volume {volume_id} is {volume['status']} "
                                 f"({volume['attach_status']}) and cannot be {action}ed")
