"""Removing a migration's hidden destination volume, whoever undoes the migration.

The flow's revert and recovery's roll-back (a flow that cannot resume) both
undo a destination; they share this so that a failed delete is recorded the
same way: the hidden row stays, status `error`, as the record of what is
left, and `volmigrate recover` / `volmigrate cleanup` remove it later.
"""

from __future__ import annotations

from oslo_log import log as logging

from volmigrate.common.hosts import parse_host
from volmigrate.common.volumes import volume_ref
from volmigrate.db import models
from volmigrate.flows import runtime

LOG = logging.getLogger(__name__)

RETRY_HINT = "`volmigrate recover` or `volmigrate cleanup` will try again"


def remove(migration_id: str) -> str | None:
    """Delete the destination's data, then its row; say what could not be done.

    The destination has the migration's id. After the swap it names the old
    source data instead (the volume already uses the copy); deleting it is
    right either way.
    """
    rt = runtime.get()
    dest = rt.db.get_volume(migration_id)
    if dest is None:
        return None
    backend = parse_host(dest["host"]).backend
    driver = rt.drivers.get(backend)
    if driver is None:
        problem = (f"volume data {migration_id} left on {dest['host']}, whose backend "
                   f"{backend} is not enabled here; `volmigrate recover` or `volmigrate "
                   f"cleanup` will remove it once backend {backend} is enabled")
    else:
        try:
            driver.delete_volume(volume_ref(dest))
        except Exception as exc:  # the caller goes on: the volume must end usable
            problem = (f"destination {migration_id} on {dest['host']} could not be "
                       f"deleted: {exc}; {RETRY_HINT}")
        else:
            rt.db.delete_volume_row(migration_id)
            return None
    LOG.error("Migration %s: %s", migration_id, problem)
    rt.db.update_volume(migration_id, {"status": models.STATUS_ERROR})
    return problem
