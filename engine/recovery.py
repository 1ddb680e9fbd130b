"""Recovery: resume the migrations whose flow no live process runs, or roll them back.

Run when a service starts (and by `volmigrate recover`). A migration is
claimed with a conditional UPDATE of its owner, so two processes never
resume the same flow. A claimed flow is rebuilt from its flow detail (the
factory TaskFlow recorded) and resumed: finished atoms are skipped, the one
that was running runs again (the copy from its durable checkpoint). When the
flow cannot be resumed, the migration is rolled back by hand as far as the
remaining backends allow, and marked `error` with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import taskflow.engines
from oslo_log import log as logging
from taskflow import exceptions as tf_exceptions

from volmigrate.db import models
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
    return actions


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
        driver = service.drivers.get(parse_host(dest["host"]).backend)
        if driver is None:
            problems.append(f"volume data {dest['id']} left on {dest['host']}, whose backend "
                            f"is not enabled here")
            db.update_volume(dest["id"], {"status": models.STATUS_ERROR})
        else:
            try:
                driver.delete_volume(volume_ref(dest))
                db.delete_volume_row(dest["id"])
            except Exception as exc:
                problems.append(f"deleting {dest['id']} on {dest['host']} failed: {exc}")
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
