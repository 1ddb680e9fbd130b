"""The first and last task of every migration flow.

The first task does the bookkeeping of a start; its revert runs last when
anything later fails, so a flow marks its migration `error` there and
nowhere else (through flows/outcome.py, which recovery and the service's
last-resort check use too).
"""

from __future__ import annotations

from taskflow import task

from volmigrate.db import models
from volmigrate.flows import outcome, reporting, runtime
from volmigrate.flows.exceptions import MigrationFailed

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

    def revert(self, migration_id: str, *args, flow_failures=None, **kwargs) -> None:
        rt = runtime.get()
        reason = failure_reason(flow_failures)
        problems = rt.tracker(migration_id).cleanup_problems
        if problems:
            reason += " (cleanup: " + "; ".join(problems) + ")"
        outcome.record_failure(migration_id, reason)


class MarkMigrationSuccess(task.Task):
    """The migration is done: record success and restore the volume's status."""

    def execute(self, migration_id: str) -> None:
        outcome.record_success(migration_id)
