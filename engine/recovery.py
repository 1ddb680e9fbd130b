"""Recovery: resume the migrations whose flow no live process runs, or roll them back.

Run when a service starts (and by `volmigrate recover`). A migration is
claimed with a conditional UPDATE of its owner, so two processes never
resume the same flow. A claimed flow is rebuilt from its flow detail (the
factory TaskFlow recorded) and resumed: finished atoms are skipped, the one
that was running runs again (the copy from its durable checkpoint). When the
flow cannot be resumed, the migration is rolled back by hand as far as the
remaining backends allow, and marked `error` with the reason.

A roll-back (this one, or a flow's revert: both use flows/destination.py)
that cannot remove a destination keeps its hidden row, status `error`, as the
record of what is left. Every recovery then looks for such leftovers
(engine/leftovers.py, also run alone by `volmigrate cleanup`) and removes
those whose backend is back.
"""

from __future__ import annotations

from oslo_log import log as logging

from volmigrate.common.hosts import parse_host
from volmigrate.db import models
from volmigrate.engine import leftovers, ownership
from volmigrate.engine.context import ServiceContext
from volmigrate.engine.runner import FlowRunner
from volmigrate.flows import constants as flow_c
from volmigrate.flows import destination, outcome

LOG = logging.getLogger(__name__)

RESUMED = "resumed"
ROLLED_BACK = "rolled back"
COMPLETED = "completed"
SKIPPED = "skipped"


def _action(migration: dict, action: str, detail: str) -> dict:
    return {"migration_id": migration["id"], "volume_id": migration["volume_id"],
            "action": action, "detail": detail}


def recover(ctx: ServiceContext, runner: FlowRunner) -> list[dict]:
    """Claim and resume (or roll back) every unfinished migration of a dead owner,
    then remove what finished migrations left behind."""
    db = ctx.connect()
    actions = []
    for migration in db.list_migrations(states=models.STATES_UNFINISHED):
        if migration["owner"] == ctx.identity:
            continue  # ours, running
        if ownership.owner_alive(migration["owner"], migration["heartbeat_at"],
                                 ctx.stale_after()):
            actions.append(_action(migration, SKIPPED,
                                   f"running in live process {migration['owner']}"))
            continue
        if not db.update_migration(
                migration["id"], {"owner": ctx.identity, "heartbeat_at": models.utcnow()},
                {"owner": migration["owner"], "state": models.STATES_UNFINISHED}):
            actions.append(_action(migration, SKIPPED, "claimed by another process"))
            continue
        LOG.warning("Recovering migration %s of volume %s (owner %s is gone)",
                    migration["id"], migration["volume_id"], migration["owner"])
        try:
            actions.append(_resume(ctx, runner, migration))
        except Exception as exc:  # never leave it stuck: roll back what we can
            LOG.exception("Resuming migration %s failed", migration["id"])
            actions.append(roll_back(ctx, migration, f"resuming it failed: {exc}"))
    return actions + leftovers.clean_up(ctx)


def _resume(ctx: ServiceContext, runner: FlowRunner, migration: dict) -> dict:
    hosts = (migration["source_host"], migration["dest_host"])
    missing = sorted({parse_host(h).backend for h in hosts} - set(ctx.drivers))
    if missing:
        return roll_back(ctx, migration, f"backend {', '.join(missing)} is not enabled "
                                         f"in this service, so its flow cannot resume")
    flow_detail, lost = None, None
    if not migration["flow_uuid"]:
        # The flow is recorded before its first task runs (runner.launch), so
        # nothing of this migration was done yet: it starts afresh.
        runner.launch(migration)
        return _action(migration, RESUMED, "its process ended before its flow began; a new "
                                           "flow runs it from the start")
    else:
        flow_detail = runner.flow_detail(migration["flow_uuid"])
        if flow_detail is None:
            lost = f"its flow detail {migration['flow_uuid']} is missing from the flow persistence"
    if lost and migration["case"] == flow_c.CASE_DRIVER_ASSISTED:
        # Every step of that flow is idempotent and the backend may be moving
        # the volume right now: a new flow waits for it, where a rollback could
        # only record the wrong pool.
        runner.launch(migration)
        return _action(migration, RESUMED, f"{lost}; a new flow took over the backend's move")
    if lost:
        return roll_back(ctx, migration, lost)
    runner.resume(migration["id"], flow_detail)
    return _action(migration, RESUMED, f"flow {flow_detail.uuid} was {flow_detail.state}")


def roll_back(ctx: ServiceContext, migration: dict, reason: str) -> dict:
    """Undo a migration without its flow: remove the destination, give the volume back.

    After the swap the volume already uses the copy: the migration is then
    completed rather than undone (the destination row names the old source
    data, which is deleted the same way). What cannot be deleted now stays as
    the hidden row, status error, for engine/leftovers.py to remove later.
    """
    volume = ctx.connect().get_volume(migration["volume_id"])
    swapped = volume is not None and volume["name_id"] == migration["id"]
    problem = destination.remove(migration["id"])
    text = reason if problem is None else f"{reason} (cleanup: {problem})"
    if swapped:
        text = f"the data had been moved before the interruption; {text}"
        outcome.record_success(migration["id"], note=text)
        return _action(migration, COMPLETED, text)
    outcome.record_failure(migration["id"], text)
    return _action(migration, ROLLED_BACK, text)
