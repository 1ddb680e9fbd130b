"""Recovery: resume the migrations whose flow no live process runs, or roll them back.

Run when a service starts (and by `volmigrate recover`). A migration is
claimed with a conditional UPDATE of its owner, so two processes never
resume the same flow. A claimed flow is rebuilt from its flow detail (the
factory TaskFlow recorded) and resumed: finished atoms are skipped, the one
that was running runs again (the copy from its durable checkpoint). When the
flow cannot be resumed, the migration is rolled back by hand as far as the
remaining backends allow, and marked `error` with the reason.

A roll-back (this one, or a flow's revert) that cannot remove a destination
keeps its hidden row, status `error`, as the record of what is left. Every
recovery then looks for such leftovers (see `clean_up_leftovers`, also run
alone by `volmigrate cleanup`) and removes those whose backend is back.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

import taskflow.engines
from oslo_log import log as logging
from taskflow import exceptions as tf_exceptions

from volmigrate.db import models
from volmigrate.drivers.base import object_id
from volmigrate.engine import ownership
from volmigrate.engine.hosts import parse_host
from volmigrate.flows import constants as flow_c
from volmigrate.flows import reporting
from volmigrate.flows.volume_tasks import volume_ref

if TYPE_CHECKING:
    from volmigrate.engine.service import MigrationService

LOG = logging.getLogger(__name__)

RESUMED = "resumed"
ROLLED_BACK = "rolled back"
COMPLETED = "completed"
SKIPPED = "skipped"
LEFTOVER_REMOVED = "leftover removed"
LEFTOVER_KEPT = "leftover kept"
LEFTOVER_SKIPPED = "leftover skipped"

# A leftover marked `deleting` longer than this was claimed by a cleanup that
# died before it finished (no process takes minutes to delete one object):
# another cleanup may take it over. Deleting twice is harmless (drivers
# accept deleting what is gone); a row stuck in `deleting` would be forever.
DELETING_STALE_SECONDS = 300.0

RETRY_HINT = "`volmigrate recover` or `volmigrate cleanup` will try again"


def _action(migration: dict, action: str, detail: str) -> dict:
    return {"migration_id": migration["id"], "volume_id": migration["volume_id"],
            "action": action, "detail": detail}


def recover(service: MigrationService) -> list[dict]:
    """Claim and resume (or roll back) every unfinished migration of a dead owner."""
    db = service.db
    stale_after = 6 * service.conf.migration_heartbeat_interval
    actions = []
    for migration in db.list_migrations(states=models.STATES_UNFINISHED):
        if migration["owner"] == service.identity:
            continue  # ours, running
        if ownership.owner_alive(migration["owner"], migration["heartbeat_at"], stale_after):
            actions.append(_action(migration, SKIPPED,
                                   f"running in live process {migration['owner']}"))
            continue
        if not db.update_migration(
                migration["id"], {"owner": service.identity, "heartbeat_at": models.utcnow()},
                {"owner": migration["owner"], "state": models.STATES_UNFINISHED}):
            actions.append(_action(migration, SKIPPED, "claimed by another process"))
            continue
        LOG.warning("Recovering migration %s of volume %s (owner %s is gone)",
                    migration["id"], migration["volume_id"], migration["owner"])
        try:
            actions.append(_resume(service, migration))
        except Exception as exc:  # never leave it stuck: roll back what we can
            LOG.exception("Resuming migration %s failed", migration["id"])
            actions.append(roll_back(service, migration, f"resuming it failed: {exc}"))
    return actions + clean_up_leftovers(service)


def _resume(service: MigrationService, migration: dict) -> dict:
    hosts = (migration["source_host"], migration["dest_host"])
    missing = sorted({parse_host(h).backend for h in hosts} - set(service.drivers))
    if missing:
        return roll_back(service, migration, f"backend {', '.join(missing)} is not enabled "
                                              f"in this service, so its flow cannot resume")
    lost = None
    if not migration["flow_uuid"]:
        lost = "no flow was recorded for it"
    else:
        try:
            flow_detail = service.tf_backend.get_connection().get_flow_details(
                migration["flow_uuid"])
        except tf_exceptions.NotFound:
            lost = f"its flow detail {migration['flow_uuid']} is missing from the flow persistence"
    if lost and migration["case"] == flow_c.CASE_DRIVER_ASSISTED:
        # Every step of that flow is idempotent and the backend may be moving
        # the volume right now: a new flow waits for it, where a rollback could
        # only record the wrong pool.
        service.launch_flow(migration)
        return _action(migration, RESUMED, f"{lost}; a new flow took over the backend's move")
    if lost:
        return roll_back(service, migration, lost)
    engine = taskflow.engines.load_from_detail(
        flow_detail, backend=service.tf_backend, engine="parallel",
        executor=service.task_executor)
    service.run_engine(migration["id"], engine)
    return _action(migration, RESUMED, f"flow {flow_detail.uuid} was {flow_detail.state}")


def roll_back(service: MigrationService, migration: dict, reason: str) -> dict:
    """Undo a migration without its flow: remove the destination, restore the volume."""
    db, problems = service.db, []
    volume = db.get_volume(migration["volume_id"])
    dest = db.get_volume(migration["id"])  # the hidden destination has the migration's id
    swapped = volume is not None and volume["name_id"] == migration["id"]
    if dest is not None:
        # Before the swap `dest` holds the partial copy; after it, the old
        # source data (the volume already uses the copy): delete it either way.
        # What cannot be deleted now stays as the hidden row, status error:
        # clean_up_leftovers() removes it once its backend allows.
        backend = parse_host(dest["host"]).backend
        driver = service.drivers.get(backend)
        if driver is None:
            problems.append(f"volume data {dest['id']} left on {dest['host']}, whose backend "
                            f"{backend} is not enabled here; `volmigrate recover` or "
                            f"`volmigrate cleanup` will remove it once backend {backend} "
                            f"is enabled")
            db.update_volume(dest["id"], {"status": models.STATUS_ERROR})
        else:
            try:
                driver.delete_volume(volume_ref(dest))
                db.delete_volume_row(dest["id"])
            except Exception as exc:
                problems.append(f"deleting volume data {dest['id']} on {dest['host']} "
                                f"failed: {exc}; {RETRY_HINT}")
                db.update_volume(dest["id"], {"status": models.STATUS_ERROR})
    result = models.MIGRATION_SUCCESS if swapped else models.MIGRATION_ERROR
    if volume is not None:
        values = {"migration_status": result}
        if migration["lock_volume"]:
            values["status"] = migration["previous_status"]
        db.update_volume(volume["id"], values)
    text = reason + ("" if not problems else " (cleanup: " + "; ".join(problems) + ")")
    if swapped:
        text = f"the data had been moved before the interruption; {text}"
    db.update_migration(migration["id"], {
        "state": models.STATE_SUCCESS if swapped else models.STATE_ERROR,
        "error": text, "finished_at": models.utcnow()})
    LOG.error("Migration %s of volume %s %s: %s", migration["id"], migration["volume_id"],
              "completed without its flow" if swapped else "rolled back", text)
    reporting.notify(reporting.EVENT_END if swapped else reporting.EVENT_ERROR, migration["id"])
    return _action(migration, COMPLETED if swapped else ROLLED_BACK, text)


# -- leftovers -----------------------------------------------------------------
def _leftover(row: dict, action: str, detail: str) -> dict:
    """One line of the report, shaped like a recovery action (see `_action`)."""
    return {"migration_id": row["id"],
            "volume_id": row["migration_status"][len(models.TARGET_PREFIX):],
            "host": row["host"], "action": action, "detail": detail}


def find_leftovers(service: MigrationService) -> list[dict]:
    """Hidden destination rows that no running migration owns any more.

    A hidden row has its migration's id. Only rows of a finished migration
    (`success`/`error`) or of none at all are leftovers: the row of a
    pending or running migration belongs to its flow (or to recovery).
    """
    db, hidden = service.db, service.conf.internal_project_id
    found = []
    for row in db.list_volumes(include_hidden=True, hidden_project=hidden):
        if row["project_id"] != hidden or not (row["migration_status"] or "").startswith(
                models.TARGET_PREFIX):
            continue
        migration = db.get_migration(row["id"])
        if migration is None or migration["state"] not in models.STATES_UNFINISHED:
            found.append(row)
    return found


def clean_up_leftovers(service: MigrationService) -> list[dict]:
    """Delete the data and then the row of every leftover whose backend is enabled.

    Returns one entry per leftover found: removed, kept (and why), or skipped
    because another process is removing it. Safe to run from many processes
    at once: a row is claimed (`deleting`) by a conditional update first.
    """
    results = []
    for row in find_leftovers(service):
        try:
            results.append(_remove_leftover(service, row))
        except Exception as exc:  # the database itself failed: report, go on
            LOG.exception("Removing the leftover %s failed", row["id"])
            results.append(_leftover(row, LEFTOVER_KEPT,
                                     f"removing its data on {row['host']} failed: {exc}; "
                                     f"{RETRY_HINT}"))
    return results


def _shared_with(service: MigrationService, row: dict) -> str | None:
    """Another volume whose data is the same backend object, if any (never delete it)."""
    backend, obj = parse_host(row["host"]).backend, object_id(row)
    for other in service.db.list_volumes(include_hidden=True):
        if other["id"] != row["id"] and object_id(other) == obj \
                and parse_host(other["host"]).backend == backend:
            return other["id"]
    return None


def _remove_leftover(service: MigrationService, row: dict) -> dict:
    db, host = service.db, row["host"]
    backend = parse_host(host).backend
    driver = service.drivers.get(backend)
    if driver is None:
        return _leftover(row, LEFTOVER_KEPT,
                         f"its data on {host} stays: backend {backend} is not enabled here; "
                         f"`volmigrate recover` or `volmigrate cleanup` removes it once it is")
    if row["status"] == models.STATUS_DELETING and row["updated_at"] is not None and (
            models.utcnow() - row["updated_at"]
            < datetime.timedelta(seconds=DELETING_STALE_SECONDS)):
        return _leftover(row, LEFTOVER_SKIPPED, "another process is removing it")
    other = _shared_with(service, row)
    if other is not None:
        return _leftover(row, LEFTOVER_KEPT,
                         f"its data on {host} is not deleted: volume {other} uses the same "
                         f"backend object")
    # Claim it: the status and updated_at read above must still hold, so of
    # two processes only one deletes, and a stale claim is taken over once.
    if not db.update_volume(row["id"], {"status": models.STATUS_DELETING}, {
            "status": row["status"], "updated_at": row["updated_at"],
            "project_id": row["project_id"], "migration_status": row["migration_status"]}):
        gone = db.get_volume(row["id"]) is None
        return _leftover(row, LEFTOVER_SKIPPED, "another process removed it" if gone
                         else "another process is removing it")
    try:
        driver.delete_volume(volume_ref(row))
    except Exception as exc:
        db.update_volume(row["id"], {"status": models.STATUS_ERROR},
                         {"status": models.STATUS_DELETING})
        LOG.warning("Deleting the data migration %s left on %s failed: %s",
                    row["id"], host, exc)
        return _leftover(row, LEFTOVER_KEPT,
                         f"deleting its data on {host} failed: {exc}; {RETRY_HINT}")
    db.delete_volume_row(row["id"])
    LOG.info("Removed the data migration %s left on %s", row["id"], host)
    return _leftover(row, LEFTOVER_REMOVED, f"the data it left on {host} was deleted")
