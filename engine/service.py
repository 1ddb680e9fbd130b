"""MigrationService: the API a volume manager embeds.

It composes the parts that change separately, all over one ServiceContext
(engine/context.py): volume operations (volumes.py), migration requests
(requests.py), the flow runner (runner.py, with recovery.py and leftovers.py
beside it) and the abort watcher (watcher.py). None of the parts imports
another. ``connect()`` opens the database alone, enough to read volumes,
migrations and progress from any process; it does not import TaskFlow, so
read-only commands start fast. ``start()`` loads the drivers and runs flows.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from oslo_config import cfg
from oslo_log import log as logging

from volmigrate.common.units import parse_size
from volmigrate.db import api as db_api
from volmigrate.drivers.base import VolumeDriver
from volmigrate.engine import backends, notifications, opts, ownership
from volmigrate.engine.catalog import Catalog
from volmigrate.engine.context import ServiceContext
from volmigrate.engine.types import VolumeTypes
from volmigrate.engine.requests import (  # noqa: F401 (the embedding API)
    ACCEPTED_MESSAGE,
    REJECTED_PREFIX,
    MigrationRequests,
    MigrationResponse,
)
from volmigrate.engine.volumes import VolumeOperations
from volmigrate.engine.watcher import AbortWatcher
from volmigrate.flows import constants as flow_c
from volmigrate.flows import runtime

if TYPE_CHECKING:
    from volmigrate.engine.runner import FlowRunner

LOG = logging.getLogger(__name__)


class MigrationService:
    """Volumes, migrations and their flows for one node."""

    def __init__(self, conf: cfg.ConfigOpts | None = None) -> None:
        self.conf = conf if conf is not None else cfg.CONF
        opts.register(self.conf)
        self.ctx = ServiceContext(self.conf)
        self.runner: FlowRunner | None = None
        self._watcher: AbortWatcher | None = None
        self.requests = MigrationRequests(self.ctx, launch=self._launch)
        self.volumes = VolumeOperations(self.ctx, abort=self.requests.abort)
        self.types = VolumeTypes(self.ctx)
        self.catalog = Catalog(self.ctx)

    # -- what embedders and tools read -------------------------------------
    @property
    def db(self) -> db_api.Database | None:
        return self.ctx.db

    @property
    def drivers(self) -> dict[str, VolumeDriver]:
        return self.ctx.drivers

    @property
    def identity(self) -> str:
        return self.ctx.identity

    @property
    def tf_backend(self):
        """TaskFlow's persistence backend (for flow inspection); None until started."""
        return self.runner.tf_backend if self.runner else None

    # -- lifecycle ---------------------------------------------------------
    def connect(self) -> None:
        self.ctx.connect()

    def start(self, recover: bool = True) -> None:
        """Load the drivers and run migrations; with `recover`, take over the
        unfinished migrations of dead processes first (see engine/recovery.py)."""
        if self.ctx.runtime is not None:
            return
        # TaskFlow is imported only by a service that runs flows.
        from volmigrate.engine.runner import FlowRunner

        ctx = self.ctx
        opts.validate(self.conf)
        drivers = backends.load_drivers(self.conf)  # a bad backend stops us before the db
        db = ctx.connect()
        settings = runtime.Settings(
            progress_interval=self.conf.migration_progress_report_interval,
            bps_limit=self.conf.volume_copy_bps_limit,
            block_size=parse_size(self.conf.volume_dd_blocksize),
            hidden_project=self.conf.internal_project_id,
            checkpoint_bytes=parse_size(self.conf.migration_checkpoint_size),
            copy_method=self.conf.copy_method,
            verify=self.conf.migration_verify,
        )
        ctx.identity = ownership.identity()  # this process, even after a fork
        self.runner = FlowRunner(ctx, workers=self.conf.migration_workers)
        rt = runtime.Runtime(db=db, drivers=drivers,
                             notifier=notifications.make_notifier(self.conf),
                             settings=settings)
        runtime.install(rt)
        ctx.drivers, ctx.runtime = drivers, rt
        ctx.future_of = self.runner.future
        self._watcher = AbortWatcher(ctx)
        self._watcher.start()
        LOG.info("volmigrate service started on %s with backends %s",
                 self.conf.host, ", ".join(drivers))
        if recover:
            self.recover()

    def stop(self, wait: bool = True) -> None:
        """Stop; with `wait`, let running migrations end first."""
        if self.ctx.runtime is None:
            return
        if wait:
            self.runner.drain()
        self._watcher.stop()
        self.runner.shutdown(wait=wait)
        runtime.uninstall()
        self.ctx.runtime = None

    def stop_for_restart(self, timeout: float) -> dict[str, str]:
        """Stop every migration of this process where it stands, to be resumed later.

        A running copy makes what it wrote durable, records that checkpoint and
        stops; nothing is reverted. The caller then ends the process: each
        migration's flow stays persisted as running, owned by a process that is
        gone, and the next start (or `volmigrate recover`) resumes it from its
        checkpoint. Returns, per migration, where it stopped; a migration not
        copying (creating its destination, a driver's move) is left as it is,
        which the same resume handles, as after a crash. A driver's move is
        not waited for: its progress is the backend's, with no checkpoint of
        ours to make durable (its bytes_durable is 0, which once read as
        "stopped at byte 0").
        """
        rt = self.ctx.runtime
        if rt is None:
            return {}
        deadline = time.monotonic() + timeout
        outcome: dict[str, str] = {}
        db = self.ctx.connect()
        for migration_id, tracker in rt.park_all():
            row = db.get_migration(migration_id)
            if row is not None and row["case"] == flow_c.CASE_DRIVER_ASSISTED:
                outcome[migration_id] = "waits for the backend's move"
                continue
            copying = tracker.position() is not None and not tracker.copy_done.is_set()
            if copying and tracker.parked.wait(max(0.0, deadline - time.monotonic())):
                row = db.get_migration(migration_id)
                outcome[migration_id] = f"stopped at byte {row['bytes_durable']} (durable)"
            elif copying:
                outcome[migration_id] = "still copying at the deadline"
            else:
                outcome[migration_id] = "not copying"
        for migration_id, what in outcome.items():
            LOG.warning("Migration %s %s; it resumes at the next start", migration_id, what)
        return outcome

    def __enter__(self) -> "MigrationService":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _launch(self, migration: dict) -> None:
        self.runner.launch(migration)

    # -- recovery ------------------------------------------------------------
    def recover(self) -> list[dict]:
        """Resume or roll back the migrations no live process runs; say what was done.

        Idempotent: a second call finds nothing to do.
        """
        from volmigrate.engine import recovery

        self.ctx.require_started()
        actions = recovery.recover(self.ctx, self.runner)
        for action in actions:
            LOG.info("Recovery of migration %(migration_id)s (volume %(volume_id)s): "
                     "%(action)s, %(detail)s", action)
        return actions

    def clean_up_leftovers(self) -> list[dict]:
        """Remove what finished migrations left behind; say what was removed and what was not.

        See engine/leftovers.py; `recover()` does it too.
        """
        from volmigrate.engine import leftovers

        self.ctx.require_started()
        results = leftovers.clean_up(self.ctx)
        for result in results:
            LOG.info("Leftover of migration %(migration_id)s (volume %(volume_id)s) on "
                     "%(host)s: %(action)s, %(detail)s", result)
        return results

    # -- volumes ---------------------------------------------------------------
    def create_volume(self, size: str | int, host: str | None = None, name: str | None = None,
                      project_id: str | None = None, **details) -> dict:
        """Create an empty (zero-filled, sparse where possible) volume on `host`.

        Without a host the volume is placed by its type (`volume_type`, a type
        row) or `default_volume_type`, else on the pool with the most free
        capacity. `details`: volume_type, user_id, description, metadata.
        """
        if details.get("volume_type") is None and self.conf.default_volume_type:
            details["volume_type"] = self.types.get(self.conf.default_volume_type)
        return self.volumes.create(size, host, name=name, project_id=project_id,
                                   place=self.catalog.place, **details)

    def get_volume(self, volume_id: str, include_hidden: bool = False) -> dict:
        return self.ctx.get_volume(volume_id, include_hidden=include_hidden)

    def list_volumes(self, migration_status: str | None = None,
                     include_hidden: bool = False, **filters: str | None) -> list[dict]:
        """Volumes, optionally filtered by migration_status ("none" = never migrated),
        and by project_id, status, host (by level) and name."""
        return self.volumes.list(migration_status, include_hidden=include_hidden, **filters)

    def delete_volume(self, volume_id: str, force: bool = False) -> None:
        self.volumes.delete(volume_id, force=force)

    def attach_volume(self, volume_id: str, **details: str | None) -> dict:
        """Mark the volume attached; an unlocked migration is aborted first.

        `details`: instance_uuid or host_name, mountpoint, mode (rw or ro).
        """
        return self.volumes.attach(volume_id, **details)

    def detach_volume(self, volume_id: str, attachment_id: str | None = None) -> dict:
        return self.volumes.detach(volume_id, attachment_id)

    def force_detach_volume(self, volume_id: str, attachment_id: str | None = None) -> dict:
        return self.volumes.force_detach(volume_id, attachment_id)

    # -- migrations ----------------------------------------------------------
    def migrate_volume(self, volume_id: str, host: str, lock_volume: bool = False,
                       force_host_copy: bool = False) -> MigrationResponse:
        """Validate and accept a migration; it runs in the background."""
        return self.requests.migrate(volume_id, host, lock_volume=lock_volume,
                                     force_host_copy=force_host_copy)

    def abort_migration(self, ref: str, reason: str = "aborted by the administrator") -> dict:
        """Stop a running migration (by id or volume id) and wait for its rollback."""
        return self.requests.abort_migration(ref, reason)

    def get_migration(self, migration_id: str) -> dict:
        return self.ctx.get_migration(migration_id)

    def list_migrations(self, volume_id: str | None = None) -> list[dict]:
        return self.ctx.connect().list_migrations(volume_id=volume_id)

    def wait(self, ref: str, timeout: float | None = None) -> dict:
        """Wait for a migration (by id, or a volume's latest) to end; return its row.

        Works for migrations running in another process too, through the database.
        """
        return self.ctx.wait(ref, timeout=timeout)

    def get_migration_progress(self, volume_id: str) -> dict:
        """Progress of the volume's latest migration (live when it runs here)."""
        return self.requests.progress(volume_id)

    # -- what the Block Storage API adds ---------------------------------------
    def retype_volume(self, volume_id: str, new_type: str,
                      migration_policy: str = "never") -> MigrationResponse:
        """Give the volume another type, migrating it when the type needs another backend."""
        volume_type = self.types.get(new_type)
        return self.requests.retype(volume_id, volume_type, migration_policy,
                                    place=lambda size, vtype, current: self.catalog.place(
                                        size, vtype, exclude_backend=current))

    def cancel_migration(self, volume_id: str) -> dict:
        """Stop the volume's running migration and roll it back, without waiting."""
        return self.requests.cancel(volume_id)

    def reset_volume_status(self, volume_id: str, **values: str | None) -> dict:
        return self.volumes.reset_status(volume_id, **values)
