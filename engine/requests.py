"""Migration requests: validate, accept or reject, choose the case, abort, report progress.

Acceptance is one conditional UPDATE (see Database.accept_migration), so two
concurrent requests for one volume cannot both win, and a rejection changes
nothing. Running the accepted migration is the flow runner's job, handed in
as a callable so that this module never imports TaskFlow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from oslo_log import log as logging

from volmigrate.common.hosts import Host, parse_host
from volmigrate.common.volumes import volume_ref
from volmigrate.db import api as db_api
from volmigrate.db import models
from volmigrate.drivers.base import LOCAL_PATH_ACCESS, VolumeDriver, move_target
from volmigrate.drivers.exceptions import DriverError
from volmigrate.engine.backends import driver_class_of
from volmigrate.engine.context import ServiceContext
from volmigrate.engine.opts import read_option
from volmigrate.engine.types import VolumeTypes
from volmigrate.engine.types import backend_name_of as type_backend_name
from volmigrate.engine.exceptions import (BackendError, InvalidInput, InvalidVolumeState,
                                          MigrationNotFound, NotFound, VolumeNotFound)
from volmigrate.flows import constants as flow_c
from volmigrate.flows.reporting import percent_of

LOG = logging.getLogger(__name__)

ACCEPTED_MESSAGE = ("Your migration request has been received. Please check migration "
                    "status and the server log to see more information.")
REJECTED_PREFIX = "Your migration request failed to process: "
CANCELLED_REASON = "cancelled by the administrator"
RETYPE_POLICIES = ("never", "on-demand")

# How long an attach waits for the migration it aborted to finish reverting.
ABORT_WAIT_SECONDS = 300.0


@dataclasses.dataclass(frozen=True)
class MigrationResponse:
    """The answer to a migrate request, given without waiting for the migration."""

    accepted: bool
    message: str
    migration_id: str | None = None
    reason: str | None = None


class MigrationRequests:
    """The migration calls of the embedding API (see MigrationService)."""

    def __init__(self, ctx: ServiceContext, launch: Callable[[dict], None]) -> None:
        self.ctx = ctx
        self._launch = launch

    def migrate(self, volume_id: str, host: str, lock_volume: bool = False,
                force_host_copy: bool = False) -> MigrationResponse:
        """Validate and accept a migration; it runs in the background."""
        self.ctx.require_started()
        try:
            migration = self._accept(volume_id, host, lock_volume, force_host_copy)
        except (InvalidInput, InvalidVolumeState, VolumeNotFound, BackendError) as exc:
            LOG.warning("Migration of volume %s to %s rejected: %s", volume_id, host, exc)
            return MigrationResponse(False, REJECTED_PREFIX + str(exc), reason=str(exc))
        self._launch(migration)
        LOG.info("Migration %s of volume %s from %s to %s accepted (lock=%s)",
                 migration["id"], volume_id, migration["source_host"],
                 migration["dest_host"], lock_volume)
        return MigrationResponse(True, ACCEPTED_MESSAGE, migration_id=migration["id"])

    def retype(self, volume_id: str, new_type: dict, migration_policy: str = "never",
               place: Callable[[int, dict, str], object] | None = None) -> MigrationResponse:
        """Change the volume's type; migrate it when the type names another backend.

        A retype that needs no migration (the new type fits the volume's
        backend) is done at once. One that does is refused with policy
        `never`, as the spec says, and with `on-demand` becomes a migration to
        a pool `place` chooses, holding the volume `retyping`; the type
        changes when, and only when, the migration succeeds.
        """
        self.ctx.require_started()
        try:
            return self._retype(volume_id, new_type, migration_policy, place)
        except (InvalidInput, InvalidVolumeState, VolumeNotFound, BackendError) as exc:
            LOG.warning("Retype of volume %s to %s rejected: %s", volume_id,
                        new_type.get("name"), exc)
            return MigrationResponse(False, REJECTED_PREFIX + str(exc), reason=str(exc))

    def _retype(self, volume_id, new_type, migration_policy, place) -> MigrationResponse:
        ctx = self.ctx
        if migration_policy not in RETYPE_POLICIES:
            raise InvalidInput(f"migration_policy must be one of {', '.join(RETYPE_POLICIES)}")
        volume = ctx.get_volume(volume_id)
        if volume["migration_status"] in models.MIGRATION_RUNNING_STATES:
            raise InvalidVolumeState(f"volume {volume_id} is being migrated (migration_status "
                                     f"{volume['migration_status']})")
        if volume["status"] not in (models.STATUS_AVAILABLE, models.STATUS_IN_USE):
            raise InvalidVolumeState(f"volume {volume_id} is {volume['status']}: only "
                                     f"available or in-use volumes can be retyped")
        if volume["volume_type_id"] == new_type["id"]:
            raise InvalidInput(f"volume {volume_id} already has type {new_type['name']}")
        wanted = type_backend_name(new_type)
        backend = parse_host(volume["host"]).backend
        if wanted is None or wanted == self._backend_name(backend):
            if not ctx.connect().update_volume(volume["id"], {"volume_type_id": new_type["id"]}, {
                    "status": (models.STATUS_AVAILABLE, models.STATUS_IN_USE),
                    "migration_status": db_api.Not(*models.MIGRATION_RUNNING_STATES)}):
                raise InvalidVolumeState(f"volume {volume_id} changed during the retype; "
                                         f"try again")
            LOG.info("Volume %s retyped to %s (no migration needed)", volume_id,
                     new_type["name"])
            return MigrationResponse(True, f"volume {volume_id} retyped to {new_type['name']}")
        if migration_policy == "never":
            raise InvalidInput(f"Retype requires migration but is not allowed: type "
                               f"{new_type['name']} needs backend {wanted}, volume "
                               f"{volume_id} is on {volume['host']} (use migration_policy "
                               f"on-demand)")
        if volume["status"] != models.STATUS_AVAILABLE:
            raise InvalidVolumeState(f"volume {volume_id} is {volume['status']}: a retype "
                                     f"that migrates needs an available (detached) volume")
        dest = place(volume["size"], new_type, backend)
        migration = self._accept(volume_id, str(dest), False, False, new_type_id=new_type["id"])
        self._launch(migration)
        LOG.info("Retype of volume %s to %s accepted: migration %s to %s", volume_id,
                 new_type["name"], migration["id"], dest)
        return MigrationResponse(True, ACCEPTED_MESSAGE, migration_id=migration["id"])

    def _check_type_allows(self, volume: dict, dest: Host) -> None:
        """A volume whose type names a backend moves only to that backend, as in Cinder
        (its scheduler checks the destination against the type); a retype moves it
        elsewhere."""
        if not volume["volume_type_id"]:
            return
        try:
            volume_type = VolumeTypes(self.ctx).get(volume["volume_type_id"])
        except NotFound:
            return
        wanted = type_backend_name(volume_type)
        if wanted is not None and wanted != self._backend_name(dest.backend):
            raise InvalidInput(
                f"volume {volume['id']} has type {volume_type['name']}, whose "
                f"volume_backend_name is {wanted}; {dest.backend_host} is "
                f"{self._backend_name(dest.backend)}: retype the volume (migration_policy "
                f"on-demand) to move it there")

    def _backend_name(self, backend: str) -> str:
        return read_option(self.ctx.conf, "volume_backend_name", backend) or backend

    def _accept(self, volume_id, host, lock_volume, force_host_copy,
                new_type_id: str | None = None) -> dict:
        ctx = self.ctx
        if not isinstance(lock_volume, bool) or not isinstance(force_host_copy, bool):
            raise InvalidInput("lock_volume and force_host_copy must be true or false")
        volume = ctx.get_volume(volume_id)
        dest, dest_driver = ctx.resolve_host(host)
        source_driver = ctx.driver_of(volume)
        if str(dest) == volume["host"]:
            raise InvalidInput(f"volume {volume_id} is already on host {dest}")
        orphan = ctx.orphaned_migration(volume)
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
        if new_type_id is None:
            self._check_type_allows(volume, dest)
        case = choose_case(volume, dest, source_driver, dest_driver, force_host_copy)
        values = {"migration_status": models.MIGRATION_STARTING}
        if new_type_id:
            values["status"] = models.STATUS_RETYPING
        elif lock_volume:
            values["status"] = models.STATUS_MAINTENANCE
        migration = ctx.connect().accept_migration(
            volume["id"], values,
            {"status": models.STATUS_AVAILABLE, "attach_status": models.ATTACH_DETACHED,
             "host": volume["host"],
             "migration_status": db_api.Not(*models.MIGRATION_RUNNING_STATES)},
            {"source_host": volume["host"], "dest_host": str(dest),
             "lock_volume": lock_volume, "force_host_copy": force_host_copy,
             "case": case, "state": models.STATE_PENDING,
             "previous_status": volume["status"], "bytes_total": volume["size"],
             "owner": ctx.identity, "heartbeat_at": models.utcnow(),
             "new_type_id": new_type_id})
        if migration is None:  # another request changed the volume since we read it
            now = ctx.get_volume(volume_id)
            if now["migration_status"] in models.MIGRATION_RUNNING_STATES:
                raise InvalidVolumeState(f"volume {volume_id} is already being migrated "
                                         f"(migration_status {now['migration_status']})")
            raise InvalidVolumeState(f"volume {volume_id} is {now['status']}: only "
                                     f"available volumes can be migrated")
        return migration

    # -- aborts --------------------------------------------------------------
    def abort(self, migration: dict, reason: str) -> None:
        """Ask the migration to stop, wherever it runs, and wait until it has ended."""
        ctx = self.ctx
        self._request_abort(migration, reason)
        LOG.warning("Aborting migration %s: %s", migration["id"], reason)
        try:
            ctx.wait(migration["id"], timeout=ABORT_WAIT_SECONDS)
        except TimeoutError:
            raise InvalidVolumeState(
                f"the migration {migration['id']} of volume {migration['volume_id']} was "
                f"asked to abort but is still running; try again later") from None

    def _request_abort(self, migration: dict, reason: str) -> None:
        """Record the abort on the row (another process's watcher reads it) and tell
        this process's copy at once when it runs here."""
        ctx = self.ctx
        ctx.connect().update_migration(migration["id"], {"abort_reason": reason},
                                       {"abort_reason": None})
        if ctx.runtime is not None and migration["id"] in ctx.runtime.trackers:
            ctx.runtime.trackers[migration["id"]].abort(reason)

    def _refuse_driver_assisted(self, migration: dict) -> None:
        if migration["case"] != flow_c.CASE_DRIVER_ASSISTED:
            return
        backend = parse_host(migration["source_host"]).backend
        driver = self.ctx.drivers.get(backend)
        cls = type(driver) if driver is not None else driver_class_of(self.ctx.conf, backend)
        if cls is not None and cls.can_abort_moves:
            return
        raise InvalidVolumeState(
            f"migration {migration['id']} of volume {migration['volume_id']} is a move "
            f"inside backend {backend}, which cannot be stopped half way; the volume "
            f"stays usable while it runs")

    def abort_migration(self, ref: str, reason: str = "aborted by the administrator") -> dict:
        """Stop a running migration (by id or volume id) and wait for its rollback."""
        migration = self.ctx.migration_for(ref)
        if migration["state"] not in models.STATES_UNFINISHED:
            raise InvalidVolumeState(f"migration {migration['id']} is not running "
                                     f"(state {migration['state']})")
        self._refuse_driver_assisted(migration)
        self.abort(migration, reason)
        return self.ctx.get_migration(migration["id"])

    def cancel(self, volume_id: str) -> dict:
        """Ask the volume's running migration to stop and roll back; do not wait.

        The copy stops at its next check (within a block), every step is
        reverted, and the migration ends `error` with the reason "cancelled".
        A driver-assisted move is refused unless its backend can abort it
        (Ceph's live migration can, until its commit; a Storwize move cannot).
        """
        ctx = self.ctx
        volume = ctx.get_volume(volume_id)
        migration = ctx.connect().latest_migration(volume["id"])
        if migration is None or migration["state"] not in models.STATES_UNFINISHED:
            raise InvalidVolumeState(f"There is no migration being performed for volume "
                                     f"{volume_id} at this moment.")
        self._refuse_driver_assisted(migration)
        orphan = ctx.orphaned_migration(volume)
        if orphan:
            raise InvalidVolumeState(f"volume {volume_id}: {orphan}")
        self._request_abort(migration, CANCELLED_REASON)
        LOG.warning("Cancelling migration %s of volume %s", migration["id"], volume_id)
        return ctx.get_migration(migration["id"])

    # -- progress ------------------------------------------------------------
    def progress(self, volume_id: str) -> dict:
        """Progress of the volume's latest migration.

        A migration running in this process is asked live (the running copy's
        position: dd's fdinfo, the kernel copy's offset or the file position);
        otherwise the last stored report is returned.
        """
        ctx = self.ctx
        volume = ctx.get_volume(volume_id)
        migration = ctx.connect().latest_migration(volume["id"])
        if migration is None:
            raise MigrationNotFound(f"volume {volume_id} (never migrated)")
        copied = max(migration["progress_bytes"], migration["bytes_durable"])
        total = migration["bytes_total"]
        live = False
        if ctx.runtime is not None and migration["id"] in ctx.runtime.trackers:
            position = ctx.runtime.trackers[migration["id"]].position()
            if position is not None:
                copied, live = max(position, copied), True
        if migration["state"] == models.STATE_SUCCESS:
            copied = total
        rate = eta = None
        if migration["state"] in models.STATES_UNFINISHED and migration["started_at"]:
            # Over the whole migration so far: after a resume it counts the
            # bytes copied before the crash too, an overestimate that shrinks.
            elapsed = (models.utcnow() - migration["started_at"]).total_seconds()
            if elapsed > 0 and copied:
                rate = copied / elapsed
                eta = (total - copied) / rate
        return {
            "volume_id": volume["id"], "migration_id": migration["id"],
            "migration_status": volume["migration_status"], "state": migration["state"],
            "source_host": migration["source_host"], "destination_host": migration["dest_host"],
            "percent": percent_of(copied, total), "bytes_copied": copied,
            "bytes_total": total, "bytes_durable": migration["bytes_durable"],
            "live": live, "error": migration["error"],
            "rate": rate, "eta": eta,
            "progress_at": migration["progress_at"], "started_at": migration["started_at"],
            "finished_at": migration["finished_at"],
        }


def choose_case(volume: dict, dest: Host, source_driver: VolumeDriver,
                dest_driver: VolumeDriver, force_host_copy: bool) -> str:
    """Driver-assisted when the storage can move the volume itself, else a host copy."""
    if not force_host_copy:
        try:
            target = move_target(source_driver, dest_driver, dest.pool)
            movable = target is not None and source_driver.can_migrate_within_backend(
                volume_ref(volume), target)
        except DriverError as exc:
            raise BackendError(f"backend {parse_host(volume['host']).backend} cannot tell "
                               f"whether it can move volume {volume['id']} to "
                               f"{dest.backend}: {exc}") from exc
        if movable:
            return flow_c.CASE_DRIVER_ASSISTED
    local = (source_driver.access_kind() in LOCAL_PATH_ACCESS
             and dest_driver.access_kind() in LOCAL_PATH_ACCESS)
    return flow_c.CASE_HOST_COPY_PATHS if local else flow_c.CASE_HOST_COPY_FILE_IO
