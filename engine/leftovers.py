"""Leftovers: destination data that a finished migration could not remove.

A roll-back that cannot delete a destination (its backend disabled, the
delete failed) keeps the hidden row, status `error`, as the record of it.
Recovery (and `volmigrate cleanup` alone) deletes such data through its
driver, then the row, once the backend allows. Never touches a running
migration; safe from several processes at once.
"""

from __future__ import annotations

import datetime

from oslo_log import log as logging

from volmigrate.common.hosts import parse_host
from volmigrate.common.volumes import volume_ref
from volmigrate.db import models
from volmigrate.drivers.base import object_id
from volmigrate.engine.context import ServiceContext
from volmigrate.flows.destination import RETRY_HINT

LOG = logging.getLogger(__name__)

REMOVED = "leftover removed"
KEPT = "leftover kept"
SKIPPED = "leftover skipped"

# A leftover marked `deleting` longer than this was claimed by a cleanup that
# died before it finished (no process takes minutes to delete one object):
# another cleanup may take it over. Deleting twice is harmless (drivers
# accept deleting what is gone); a row stuck in `deleting` would be forever.
DELETING_STALE_SECONDS = 300.0

def _leftover(row: dict, action: str, detail: str) -> dict:
    """One line of the report, shaped like a recovery action."""
    return {"migration_id": row["id"],
            "volume_id": row["migration_status"][len(models.TARGET_PREFIX):],
            "host": row["host"], "action": action, "detail": detail}


def find(ctx: ServiceContext) -> list[dict]:
    """Hidden destination rows that no running migration owns any more.

    A hidden row has its migration's id. Only rows of a finished migration
    (`success`/`error`) or of none at all are leftovers: the row of a
    pending or running migration belongs to its flow (or to recovery).
    """
    db, hidden = ctx.connect(), ctx.conf.internal_project_id
    found = []
    for row in db.list_volumes(include_hidden=True, hidden_project=hidden):
        if row["project_id"] != hidden or not (row["migration_status"] or "").startswith(
                models.TARGET_PREFIX):
            continue
        migration = db.get_migration(row["id"])
        if migration is None or migration["state"] not in models.STATES_UNFINISHED:
            found.append(row)
    return found


def clean_up(ctx: ServiceContext) -> list[dict]:
    """Delete the data and then the row of every leftover whose backend is enabled.

    Returns one entry per leftover found: removed, kept (and why), or skipped
    because another process is removing it. Safe to run from many processes
    at once: a row is claimed (`deleting`) by a conditional update first.
    """
    results = []
    for row in find(ctx):
        try:
            results.append(_remove_leftover(ctx, row))
        except Exception as exc:  # the database itself failed: report, go on
            LOG.exception("Removing the leftover %s failed", row["id"])
            results.append(_leftover(row, KEPT,
                                     f"removing its data on {row['host']} failed: {exc}; "
                                     f"{RETRY_HINT}"))
    return results


def _shared_with(ctx: ServiceContext, row: dict) -> str | None:
    """Another volume whose data is the same backend object, if any (never delete it)."""
    backend, obj = parse_host(row["host"]).backend, object_id(row)
    for other in ctx.connect().list_volumes(include_hidden=True):
        if other["id"] != row["id"] and object_id(other) == obj \
                and parse_host(other["host"]).backend == backend:
            return other["id"]
    return None


def _remove_leftover(ctx: ServiceContext, row: dict) -> dict:
    db, host = ctx.connect(), row["host"]
    backend = parse_host(host).backend
    driver = ctx.drivers.get(backend)
    if driver is None:
        return _leftover(row, KEPT,
                         f"its data on {host} stays: backend {backend} is not enabled here; "
                         f"`volmigrate recover` or `volmigrate cleanup` removes it once it is")
    if row["status"] == models.STATUS_DELETING and row["updated_at"] is not None and (
            models.utcnow() - row["updated_at"]
            < datetime.timedelta(seconds=DELETING_STALE_SECONDS)):
        return _leftover(row, SKIPPED, "another process is removing it")
    other = _shared_with(ctx, row)
    if other is not None:
        return _leftover(row, KEPT,
                         f"its data on {host} is not deleted: volume {other} uses the same "
                         f"backend object")
    # Claim it: the status and updated_at read above must still hold, so of
    # two processes only one deletes, and a stale claim is taken over once.
    if not db.update_volume(row["id"], {"status": models.STATUS_DELETING}, {
            "status": row["status"], "updated_at": row["updated_at"],
            "project_id": row["project_id"], "migration_status": row["migration_status"]}):
        gone = db.get_volume(row["id"]) is None
        return _leftover(row, SKIPPED, "another process removed it" if gone
                         else "another process is removing it")
    try:
        driver.delete_volume(volume_ref(row))
    except Exception as exc:
        db.update_volume(row["id"], {"status": models.STATUS_ERROR},
                         {"status": models.STATUS_DELETING})
        LOG.warning("Deleting the data migration %s left on %s failed: %s",
                    row["id"], host, exc)
        return _leftover(row, KEPT,
                         f"deleting its data on {host} failed: {exc}; {RETRY_HINT}")
    db.delete_volume_row(row["id"])
    LOG.info("Removed the data migration %s left on %s", row["id"], host)
    return _leftover(row, REMOVED, f"the data it left on {host} was deleted")
