"""The first and last task of every migration flow.

The first task does the bookkeeping of a start; its revert runs last when
anything later fails, so it is the one place that marks the migration
`error`, restores the volume's status and tells administrators why.
"""

from __future__ import annotations

from oslo_log import log as logging
from taskflow import task

from volmigrate.db import models
from volmigrate.flows import reporting, runtime
from volmigrate.flows.exceptions import MigrationFailed

LOG = logging.getLogger(__name__)


def failure_reason(flow_failures: dict) -> str:
    """The administrator-facing reason: our own errors first, then anything else."""
    failures = list((flow_failures or {}).values())
    if not failures:
        return "migration failed"
    ours = [f for f in failures if f.check(MigrationFailed)]
    chosen = (ours or failures)[0]
    type_name = chosen.to_dict()["exc_type_names"][0]
    text = chosen.exception_str or type_name
    if not ours:
        text = f"{type_name}: {text}"
    return text


class MarkMigrationStarting(task.Task):
    """Record that the flow runs; on revert, mark the migration failed."""

    def execute(self, migration_id: str) -> None:
        rt = runtime.get()
        if rt.db.update_migration(migration_id, {"state": models.STATE_RUNNING,
                                                 "started_at": models.utcnow()},
                                  {"started_at": None}):
            reporting.notify(reporting.EVENT_START, migration_id)
        else:  # re-run after a restart: it had started already
            rt.db.update_migration(migration_id, {"state": models.STATE_RUNNING})

    def revert(self, migration_id: str, volume_id: str, *args, flow_failures=None,
               **kwargs) -> None:
        rt = runtime.get()
        reason = failure_reason(flow_failures)
        problems = rt.tracker(migration_id).cleanup_problems
        if problems:
            reason += " (cleanup: " + "; ".join(problems) + ")"
        migration = rt.db.get_migration(migration_id)
        values = {"migration_status": models.MIGRATION_ERROR}
        expected = {}
        if migration["lock_volume"]:
            values["status"] = migration["previous_status"]
            expected["status"] = models.STATUS_MAINTENANCE
        if not rt.db.update_volume(volume_id, values, expected):
            rt.db.update_volume(volume_id, {"migration_status": models.MIGRATION_ERROR})
        rt.db.update_migration(migration_id, {
            "state": models.STATE_ERROR, "error": reason, "finished_at": models.utcnow()})
        LOG.error("Migration %(mig)s of volume %(vol)s to %(dest)s failed: %(reason)s",
                  {"mig": migration_id, "vol": volume_id,
                   "dest": migration["dest_host"], "reason": reason})
        reporting.notify(reporting.EVENT_ERROR, migration_id)
        rt.forget(migration_id)


class MarkMigrationSuccess(task.Task):
    """The migration is done: record success and restore the volume's status."""

    def execute(self, migration_id: str, volume_id: str) -> None:
        rt = runtime.get()
        migration = rt.db.get_migration(migration_id)
        values = {"migration_status": models.MIGRATION_SUCCESS}
        if migration["lock_volume"]:
            values["status"] = migration["previous_status"]
        rt.db.update_volume(volume_id, values)
        rt.db.update_migration(migration_id, {
            "state": models.STATE_SUCCESS, "finished_at": models.utcnow(),
            "percent": 100.0, "bytes_copied": migration["bytes_total"],
            "progress_bytes": migration["bytes_total"]})
        LOG.info("Migration %(mig)s of volume %(vol)s to %(dest)s succeeded",
                 {"mig": migration_id, "vol": volume_id, "dest": migration["dest_host"]})
        reporting.notify(reporting.EVENT_END, migration_id)
        rt.forget(migration_id)
