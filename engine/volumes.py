"""Volume operations: create, read, list, delete, attach and detach.

Attach and detach belong here although they may stop a migration: the spec
makes them the volume's operations, which abort an unlocked migration first.
The abort itself is the migration requests' business, handed in as a callable.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from oslo_log import log as logging

from volmigrate.common.units import parse_volume_size
from volmigrate.common.volumes import identity_text, volume_ref
from volmigrate.db import api as db_api
from volmigrate.db import models
from volmigrate.drivers.exceptions import DriverError
from volmigrate.engine.context import ServiceContext
from volmigrate.engine.exceptions import (BackendError, InvalidInput, InvalidVolumeState,
                                          NotFound, VolumeLocked)
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

    def create(self, size: str | int, host: str | None = None, name: str | None = None,
               project_id: str | None = None, *, volume_type: dict | None = None,
               user_id: str | None = None, description: str | None = None,
               metadata: dict | None = None,
               place: Callable[[int, dict | None], str] | None = None) -> dict:
        """Create an empty (zero-filled, sparse where possible) volume.

        Without `host`, `place` chooses one for the volume's size and type
        (the catalog's placement, handed in so that this module stays below it).
        """
        ctx = self.ctx
        ctx.require_started()
        try:
            size_bytes = parse_volume_size(size)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        if name is not None and (not isinstance(name, str) or len(name) > 255):
            raise InvalidInput("volume name must be a string of at most 255 characters")
        if description is not None and (not isinstance(description, str)
                                        or len(description) > 255):
            raise InvalidInput("volume description must be a string of at most 255 characters")
        metadata = _check_metadata(metadata)
        if project_id == ctx.conf.internal_project_id:
            raise InvalidInput(f"project {project_id} is reserved for internal volumes")
        if volume_type is not None and volume_type.get("encryption"):
            raise InvalidInput(f"volume type {volume_type['name']} is encrypted: volmigrate "
                               f"does not create encrypted volumes")
        if host is None:
            if place is None:
                raise InvalidInput("give the host to create the volume on")
            host = str(place(size_bytes, volume_type))
        resolved, driver = ctx.resolve_host(host)
        db = ctx.connect()
        row = db.create_volume({
            "name": name, "size": size_bytes, "host": str(resolved),
            "status": models.STATUS_CREATING, "project_id": project_id,
            "volume_type_id": volume_type["id"] if volume_type else None,
            "user_id": user_id, "description": description,
            "volume_metadata": json.dumps(metadata, sort_keys=True),
            "availability_zone": ctx.conf.storage_availability_zone,
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
             include_hidden: bool = False, **filters: str | None) -> list[dict]:
        """Volumes, optionally filtered by migration_status ("none" = never migrated)
        and by `project_id`, `status`, `host` (by level, as Cinder) and `name`."""
        allowed = models.MIGRATION_STATUSES + ("none",)
        if migration_status is not None and migration_status.lower() not in allowed \
                and not migration_status.startswith(models.TARGET_PREFIX):
            raise InvalidInput(f"unknown migration status {migration_status!r} "
                               f"(one of: {', '.join(allowed)})")
        unknown = set(filters) - {"project_id", "status", "host", "name"}
        if unknown:
            raise InvalidInput(f"unknown filter {sorted(unknown)[0]!r}")
        return self.ctx.connect().list_volumes(
            migration_status=migration_status, include_hidden=include_hidden,
            hidden_project=self.ctx.conf.internal_project_id, **filters)

    def delete(self, volume_id: str, force: bool = False) -> None:
        """Delete the volume and its data.

        `force` (Cinder's force-delete, an administrator's) deletes it in any
        status, a stuck `creating` or `error_deleting` too, but never while it
        is attached or a migration runs: that data is in use.
        """
        ctx = self.ctx
        ctx.require_started()
        volume = ctx.get_volume(volume_id)
        # Before the volume is marked deleting: a backend not enabled here must
        # leave it as it was, not stuck `deleting`.
        driver = ctx.driver_of(volume)
        expected = {"attach_status": models.ATTACH_DETACHED,
                    "migration_status": db_api.Not(*models.MIGRATION_RUNNING_STATES)}
        if force:
            expected["status"] = db_api.Not(models.STATUS_DELETING)
        else:
            expected["status"] = (models.STATUS_AVAILABLE, models.STATUS_ERROR)
        db = ctx.connect()
        if not db.update_volume(volume["id"], {"status": models.STATUS_DELETING}, expected):
            volume = ctx.get_volume(volume_id)
            raise InvalidVolumeState(self._why_busy(volume, "deleted"))
        try:
            driver.delete_volume(volume_ref(volume))
        except DriverError as exc:
            db.update_volume(volume["id"], {"status": models.STATUS_ERROR})
            raise BackendError(f"deleting volume {volume_id} failed: {exc}") from exc
        db.delete_volume_row(volume["id"])
        LOG.info("Deleted volume %s%s", volume_id, " (forced)" if force else "")

    def reset_status(self, volume_id: str, status: str | None = None,
                     attach_status: str | None = None,
                     migration_status: str | None = None) -> dict:
        """An administrator's override of the volume's recorded state (Cinder's reset-state).

        It changes records only, never data, and is refused while a migration
        of the volume is unfinished: that migration's flow would overwrite the
        reset, and its destination would be forgotten. Cancel it, or let
        `volmigrate recover` end it, first.
        """
        ctx = self.ctx
        volume = ctx.get_volume(volume_id)
        values: dict = {}
        if status is not None:
            status = _lower(status, "status")
            if status not in RESET_STATUSES:
                raise InvalidInput(f"invalid status {status!r} (one of: "
                                   f"{', '.join(RESET_STATUSES)})")
            values["status"] = status
        if attach_status is not None:
            attach_status = _lower(attach_status, "attach_status")
            if attach_status not in (models.ATTACH_ATTACHED, models.ATTACH_DETACHED):
                raise InvalidInput(f"invalid attach_status {attach_status!r} (attached or "
                                   f"detached)")
            values["attach_status"] = attach_status
            if attach_status == models.ATTACH_DETACHED:
                values.update(NO_ATTACHMENT)
        if migration_status is not None:
            migration_status = _lower(migration_status, "migration_status")
            if migration_status not in RESET_MIGRATION_STATUSES:
                raise InvalidInput(f"invalid migration_status {migration_status!r} (one of: "
                                   f"{', '.join(RESET_MIGRATION_STATUSES)})")
            values["migration_status"] = None if migration_status == "none" else migration_status
        if not values:
            raise InvalidInput("give at least one of status, attach_status and "
                               "migration_status")
        attached = values.get("attach_status", volume["attach_status"]) == models.ATTACH_ATTACHED
        if values.get("status") == models.STATUS_IN_USE and not (
                attached and (volume["attachment_id"] or "attach_status" in values)):
            raise InvalidInput(f"volume {volume_id} has no attachment: it cannot be in-use")
        unfinished = ctx.connect().list_migrations(volume_id=volume["id"],
                                                   states=models.STATES_UNFINISHED)
        if unfinished:
            raise InvalidVolumeState(
                f"volume {volume_id} has an unfinished migration {unfinished[-1]['id']}: "
                f"cancel it, or run `volmigrate recover` if its process is gone, before "
                f"resetting the volume's state")
        if not ctx.connect().update_volume(volume["id"], values, {
                "migration_status": volume["migration_status"],
                "status": volume["status"]}):
            raise InvalidVolumeState(f"volume {volume_id} changed while it was being reset; "
                                     f"try again")
        LOG.warning("Volume %s state reset by the administrator: %s", volume_id, values)
        return ctx.get_volume(volume_id)

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
    def attach(self, volume_id: str, instance_uuid: str | None = None,
               host_name: str | None = None, mountpoint: str | None = None,
               mode: str = "rw") -> dict:
        """Record the volume attached; an unlocked migration is aborted first."""
        if mode not in ("rw", "ro"):
            raise InvalidInput(f"invalid attach mode {mode!r} (rw or ro)")
        details = {"attachment_id": str(uuid.uuid4()), "instance_uuid": instance_uuid,
                   "attached_host": host_name, "mountpoint": mountpoint,
                   "attach_mode": mode, "attached_at": models.utcnow()}
        return self._attach_or_detach(volume_id, attach=True, details=details)

    def detach(self, volume_id: str, attachment_id: str | None = None) -> dict:
        volume = self.ctx.get_volume(volume_id)
        _check_attachment(volume, attachment_id)
        return self._attach_or_detach(volume_id, attach=False, details=dict(NO_ATTACHMENT))

    def force_detach(self, volume_id: str, attachment_id: str | None = None) -> dict:
        """Detach whatever the status (an administrator's, e.g. after a reset to error).

        A locked volume keeps its `maintenance`: the migration holding it gives
        the status back when it ends.
        """
        ctx = self.ctx
        volume = ctx.get_volume(volume_id)
        if volume["attach_status"] != models.ATTACH_ATTACHED and not volume["attachment_id"]:
            raise InvalidVolumeState(f"volume {volume_id} is not attached")
        _check_attachment(volume, attachment_id)
        values = dict(NO_ATTACHMENT, attach_status=models.ATTACH_DETACHED)
        held = (models.STATUS_MAINTENANCE, models.STATUS_RETYPING)
        if ctx.connect().update_volume(volume["id"], dict(values, status=models.STATUS_AVAILABLE),
                                       {"status": db_api.Not(*held)}):
            LOG.warning("Volume %s force-detached", volume_id)
        else:
            ctx.connect().update_volume(volume["id"], values)
        return ctx.get_volume(volume_id)

    def _attach_or_detach(self, volume_id: str, attach: bool, details: dict) -> dict:
        ctx = self.ctx
        action = "attach" if attach else "detach"
        volume = ctx.get_volume(volume_id)
        orphan = ctx.orphaned_migration(volume)
        if orphan:  # nobody would answer an abort: do not wait for one
            raise InvalidVolumeState(f"volume {volume_id} cannot be {action}ed: {orphan}")
        if volume["status"] == models.STATUS_MAINTENANCE:
            raise _locked(volume_id, action)
        if volume["status"] == models.STATUS_RETYPING:
            raise InvalidVolumeState(f"volume {volume_id} is being retyped (status retyping): "
                                     f"{action} is not allowed until the retype ends")
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
        values.update(details)
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


RESET_STATUSES = ("available", "in-use", "error", "creating", "attaching", "detaching",
                  "maintenance", "error_restoring", "error_extending", "reserved",
                  "error_managing", "extending", "downloading", "uploading", "retyping",
                  "backing-up", "restoring-backup", "awaiting-transfer")
RESET_MIGRATION_STATUSES = ("none", "migrating", "error", "success", "completing",
                            "starting")
NO_ATTACHMENT = {"attachment_id": None, "instance_uuid": None, "attached_host": None,
                 "mountpoint": None, "attach_mode": None, "attached_at": None}


def _lower(value, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string")
    return value.lower()


def _check_attachment(volume: dict, attachment_id: str | None) -> None:
    if attachment_id is not None and attachment_id != volume["attachment_id"]:
        raise NotFound(f"volume {volume['id']} has no attachment {attachment_id}")


def _check_metadata(metadata) -> dict:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 255 and len(v) <= 255
            for k, v in metadata.items()):
        raise InvalidInput("metadata must be an object of string keys and values "
                           "(at most 255 characters each)")
    return metadata
