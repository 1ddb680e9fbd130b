"""What administrators see of a running migration: log lines, notifications, the row.

Notifications follow Ceilometer's style: event types ``volume.migration.*``,
publisher ``volume.<source node@backend>``, and a payload built from the
database rows of *this* migration only (Cinder has shipped notifications
carrying another volume's data; building from ids avoids that).
"""

from __future__ import annotations

from oslo_log import log as logging

from volmigrate.common.hosts import parse_host
from volmigrate.db import models
from volmigrate.flows import runtime

LOG = logging.getLogger(__name__)

EVENT_START = "volume.migration.start"
EVENT_PROGRESS = "volume.migration.progress"
EVENT_END = "volume.migration.end"
EVENT_ERROR = "volume.migration.error"


def percent_of(copied: int, total: int) -> float:
    return round(100.0 * copied / total, 1) if total else 100.0


def _payload(migration: dict, volume: dict | None) -> dict:
    return {
        "migration_id": migration["id"],
        "volume_id": migration["volume_id"],
        "source_host": migration["source_host"],
        "destination_host": migration["dest_host"],
        "status": volume["status"] if volume else None,
        "migration_status": volume["migration_status"] if volume else None,
        "lock_volume": migration["lock_volume"],
        "case": migration["case"],
        "percent": migration["percent"],
        "bytes_copied": migration["progress_bytes"],
        "bytes_durable": migration["bytes_durable"],
        "bytes_total": migration["bytes_total"],
        "error": migration["error"],
    }


def notify(event_type: str, migration_id: str) -> None:
    rt = runtime.get()
    migration = rt.db.get_migration(migration_id)
    volume = rt.db.get_volume(migration["volume_id"])
    publisher = "volume." + parse_host(migration["source_host"]).backend_host
    notifier = rt.notifier.prepare(publisher_id=publisher)
    payload = _payload(migration, volume)
    if event_type == EVENT_ERROR:
        notifier.error({}, event_type, payload)
    else:
        notifier.info({}, event_type, payload)


def report_progress(migration_id: str, volume_id: str, copied: int, total: int) -> None:
    """Log, store and notify one progress report.

    `copied` is the copy's position; the durable checkpoint (the row's
    bytes_durable) is recorded by the copy itself and may lag behind.
    """
    rt = runtime.get()
    percent = percent_of(copied, total)
    LOG.info("Migration of volume %(vol)s: %(pct)d%% (%(done)d of %(total)d bytes)",
             {"vol": volume_id, "pct": int(percent), "done": copied, "total": total})
    migration = rt.db.get_migration(migration_id)
    rt.db.update_migration(migration_id, {
        "progress_bytes": copied, "bytes_total": total, "percent": percent,
        "progress_at": models.utcnow(),
        "progress_reports": (migration["progress_reports"] or 0) + 1,
    })
    notify(EVENT_PROGRESS, migration_id)
