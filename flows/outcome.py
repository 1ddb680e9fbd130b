"""How a migration ends: the one place that records its result and gives the volume back.

Three callers end migrations: the revert of a flow's first task, the
service's last-resort check after a flow returns without a result, and
recovery's roll-back of a flow that cannot resume. They must leave exactly the
same thing behind (row, volume status, log line, notification), so they all
call these two functions.
"""

from __future__ import annotations

from oslo_log import log as logging

from volmigrate.db import models
from volmigrate.flows import reporting, runtime

LOG = logging.getLogger(__name__)


def held_status(migration: dict) -> str | None:
    """The status the migration put on the volume while it runs, if any.

    A retype holds it `retyping` (as Cinder does), a locked migration
    `maintenance`.
    """
    if migration.get("new_type_id"):
        return models.STATUS_RETYPING
    if migration["lock_volume"]:
        return models.STATUS_MAINTENANCE
    return None


def _give_back(rt: runtime.Runtime, migration: dict, result: str) -> None:
    """Set the volume's migration result and restore the status the migration held.

    The status goes back only while it is still the migration's (`maintenance`
    or `retyping`): an administrator's reset in the meantime wins. A retype's
    new type is set in the same update as `migration_status = success`, never
    before: clients (tempest) read the type change as "the retype is done".
    """
    volume_id = migration["volume_id"]
    values = {"migration_status": result}
    if result == models.MIGRATION_SUCCESS and migration.get("new_type_id"):
        values["volume_type_id"] = migration["new_type_id"]
    held = held_status(migration)
    if held and rt.db.update_volume(
            volume_id, dict(values, status=migration["previous_status"]),
            {"status": held}):
        return
    rt.db.update_volume(volume_id, values)


def record_failure(migration_id: str, reason: str) -> None:
    """Mark the migration failed with `reason`, give the volume back, tell everyone."""
    rt = runtime.get()
    migration = rt.db.get_migration(migration_id)
    _give_back(rt, migration, models.MIGRATION_ERROR)
    rt.db.update_migration(migration_id, {
        "state": models.STATE_ERROR, "error": reason, "finished_at": models.utcnow()})
    LOG.error("Migration %(mig)s of volume %(vol)s to %(dest)s failed: %(reason)s",
              {"mig": migration_id, "vol": migration["volume_id"],
               "dest": migration["dest_host"], "reason": reason})
    reporting.notify(reporting.EVENT_ERROR, migration_id)
    rt.forget(migration_id)


def record_success(migration_id: str, note: str | None = None) -> None:
    """Mark the migration done (the volume uses the copy), give the volume back.

    `note` says how it ended when that was unusual (completed by recovery
    without its flow); it is kept as the migration's error text for the record.
    """
    rt = runtime.get()
    migration = rt.db.get_migration(migration_id)
    _give_back(rt, migration, models.MIGRATION_SUCCESS)
    total = migration["bytes_total"]
    rt.db.update_migration(migration_id, {
        "state": models.STATE_SUCCESS, "finished_at": models.utcnow(), "error": note,
        "percent": 100.0, "bytes_durable": total, "progress_bytes": total})
    if note:
        LOG.warning("Migration %(mig)s of volume %(vol)s to %(dest)s completed: %(note)s",
                    {"mig": migration_id, "vol": migration["volume_id"],
                     "dest": migration["dest_host"], "note": note})
    else:
        LOG.info("Migration %(mig)s of volume %(vol)s to %(dest)s succeeded",
                 {"mig": migration_id, "vol": migration["volume_id"],
                  "dest": migration["dest_host"]})
    reporting.notify(reporting.EVENT_END, migration_id)
    rt.forget(migration_id)
