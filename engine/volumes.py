"""Volume operations: create, read, list, delete, attach and detach.

Attach and detach belong here although they may stop a migration: the spec
makes them the volume's operations, which abort an unlocked migration first.
The abort itself is the migration requests' business, handed in as a callable.
"""

from __future__ import annotations

from collections.abc import Callable

from oslo_log import log as logging

from volmigrate.common.units import parse_volume_size
from volmigrate.common.volumes import identity_text, volume_ref
from volmigrate.db import api as db_api
from volmigrate.db import models
from volmigrate.drivers.exceptions import DriverError
from volmigrate.engine.context import ServiceContext
from volmigrate.engine.exceptions import (BackendError, InvalidInput, InvalidVolumeState,
                                          VolumeLocked)
from volmigrate.flows import constants as flow_c

LOG = logging.getLogger(__name__)

# How many times an attach or detach retries when a migration changed the
# volume between its read and its conditional update.
ATTACH_ATTEMPTS = 3


class VolumeOperations:
    """The volume calls of the embedding API (see MigrationService)."""

    def __init__(self, ctx: ServiceContext,
                 abort: Callable[[dict, str], None]) -> None:
        self.ctx = ctx
        self._abort = abort

    def create(self, size: str | int, host: str, name: str | None = None,
               project_id: str | None = None) -> dict:
        """Create an empty (zero-filled, sparse where possible) volume."""
        ctx = self.ctx
        ctx.require_started()
        try:
            size_bytes = parse_volume_size(size)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        if name is not None and (not isinstance(name, str) or len(name) > 255):
            raise InvalidInput("volume name must be a string of at most 255 characters")
        if project_id == ctx.conf.internal_project_id:
            raise InvalidInput(f"project {project_id} is reserved for internal volumes")
        resolved, driver = ctx.resolve_host(host)
        db = ctx.connect()
        row = db.create_volume({
            "name": name, "size": size_bytes, "host": str(resolved),
            "status": models.STATUS_CREATING, "project_id": project_id,
        })
        try:
            update = driver.create_volume(volume_ref(row))
        except DriverError as exc:
            db.update_volume(row["id"], {"status": models.STATUS_ERROR})
            raise BackendError(f"creating volume {row['id']} on {resolved} failed: "
                               f"{exc}") from exc
        try:
            identity = identity_text(driver, dict(row, **update))
        except DriverError as exc:
            db.update_volume(row["id"], {"status": models.STATUS_ERROR})
            raise BackendError(f"volume {row['id']} was created on {resolved} but cannot be "
                               f"found there: {exc}") from exc
        db.update_volume(row["id"], dict(update, status=models.STATUS_AVAILABLE,
                                         provider_id=identity))
        LOG.info("Created volume %s (%d bytes) on %s", row["id"], size_bytes, resolved)
        return db.get_volume(row["id"])

    def list(self, migration_status: str | None = None,
             include_hidden: bool = False) -> list[dict]:
        """Volumes, optionally filtered by migration_status ("none" = never migrated)."""
        allowed = models.MIGRATION_STATUSES + ("none",)
        if migration_status is not None and migration_status.lower() not in allowed \
                and not migration_status.startswith(models.TARGET_PREFIX):
            raise InvalidInput(f"unknown migration status {migration_status!r} "
                               f"(one of: {', '.join(allowed)})")
        return self.ctx.connect().list_volumes(
            migration_status=migration_status, include_hidden=include_hidden,
            hidden_project=self.ctx.conf.internal_project_id)

    def delete(self, volume_id: str) -> None:
        ctx = self.ctx
        ctx.require_started()
        volume = ctx.get_volume(volume_id)
        # Before the volume is marked deleting: a backend not enabled here must
        # leave it as it was, not stuck `deleting`.
        driver = ctx.driver_of(volume)
        deletable = (models.STATUS_AVAILABLE, models.STATUS_ERROR)
        db = ctx.connect()
        if not db.update_volume(volume["id"], {"status": models.STATUS_DELETING}, {
                "status": deletable, "attach_status": models.ATTACH_DETACHED,
                "migration_status": db_api.Not(*models.MIGRATION_RUNNING_STATES)}):
            volume = ctx.get_volume(volume_id)
            raise InvalidVolumeState(self._why_busy(volume, "deleted"))
        try:
            driver.delete_volume(volume_ref(volume))
        except DriverError as exc:
            db.update_volume(volume["id"], {"status": models.STATUS_ERROR})
            raise BackendError(f"deleting volume {volume_id} failed: {exc}") from exc
        db.delete_volume_row(volume["id"])
        LOG.info("Deleted volume %s", volume_id)

    def _why_busy(self, volume: dict, action: str) -> str:
        orphan = self.ctx.orphaned_migration(volume)
        if orphan:
            return f"volume {volume['id']} cannot be {action}: {orphan}"
        if volume["migration_status"] in models.MIGRATION_RUNNING_STATES:
            return (f"volume {volume['id']} is being migrated (migration_status "
                    f"{volume['migration_status']}) and cannot be {action}")
        if volume["attach_status"] == models.ATTACH_ATTACHED:
            return f"volume {volume['id']} is attached (status {volume['status']}); detach it first"
        return f"volume {volume['id']} is {volume['status']} and cannot be {action}"

    # -- attach / detach -----------------------------------------------------
    def attach(self, volume_id: str) -> dict:
        """Mark the volume attached; an unlocked migration is aborted first."""
        return self._attach_or_detach(volume_id, attach=True)

    def detach(self, volume_id: str) -> dict:
        return self._attach_or_detach(volume_id, attach=False)

    def _attach_or_detach(self, volume_id: str, attach: bool) -> dict:
        ctx = self.ctx
        action = "attach" if attach else "detach"
        volume = ctx.get_volume(volume_id)
        orphan = ctx.orphaned_migration(volume)
        if orphan:  # nobody would answer an abort: do not wait for one
            raise InvalidVolumeState(f"volume {volume_id} cannot be {action}ed: {orphan}")
        if volume["status"] == models.STATUS_MAINTENANCE:
            raise _locked(volume_id, action)
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
        for _ in range(ATTACH_ATTEMPTS):
            migration = ctx.running_migration(volume)
            condition = dict(expected)
            if migration is not None and migration["case"] == flow_c.CASE_DRIVER_ASSISTED:
                # The backend moves the volume online and cannot stop half way:
                # the volume stays usable and the migration goes on.
                del condition["migration_status"]
            elif migration is not None:
                self._abort(migration, f"aborted: {action} of volume {volume_id} was "
                                       f"requested during the migration")
            if ctx.connect().update_volume(volume["id"], values, condition):
                LOG.info("Volume %s %sed", volume_id, action)
                return ctx.get_volume(volume_id)
            volume = ctx.get_volume(volume_id)
            if volume["status"] == models.STATUS_MAINTENANCE:
                raise _locked(volume_id, action)
            if volume["migration_status"] not in models.MIGRATION_RUNNING_STATES:
                break
        raise InvalidVolumeState(f"volume {volume_id} is {volume['status']} "
                                 f"({volume['attach_status']}) and cannot be {action}ed")


def _locked(volume_id: str, action: str) -> VolumeLocked:
    return VolumeLocked(f"volume {volume_id} is locked by a running migration (status "
                        f"maintenance): {action} is not allowed until the migration ends")
