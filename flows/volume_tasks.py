"""Tasks that create, connect and swap volumes on the backends."""

from __future__ import annotations

from oslo_log import log as logging
from taskflow import task

from volmigrate.common.volumes import identity_text, volume_ref
from volmigrate.db import models
from volmigrate.flows import constants as c
from volmigrate.flows import destination, runtime
from volmigrate.flows.exceptions import MigrationFailed

LOG = logging.getLogger(__name__)


def _cleanup_problem(migration_id: str, text: str) -> None:
    LOG.error("Migration %s: %s", migration_id, text)
    runtime.get().tracker(migration_id).cleanup_problems.append(text)


class CreateDestinationVolume(task.Task):
    """Create the hidden destination volume (internal project, `target:<id>`).

    Its id is the migration's id, so a revert or a resumed flow finds it even
    when execute failed half way.
    """

    default_provides = c.DEST_VOLUME_ID

    def execute(self, migration_id: str, volume_id: str, dest_host: str) -> str:
        rt = runtime.get()
        rt.tracker(migration_id).check_abort()
        source = rt.db.get_volume(volume_id)
        dest = rt.db.get_volume(migration_id)
        driver = rt.driver_for_host(dest_host)
        if dest is not None and dest["status"] == models.STATUS_AVAILABLE:
            if dest["provider_id"] is None:  # a restart came before it was recorded
                self._record_identity(rt, driver, migration_id, dest_host)
            return migration_id  # created before a restart
        if dest is not None:
            # A restart interrupted the creation: start it over (no data yet).
            driver.delete_volume(volume_ref(dest))
        else:
            dest = rt.db.create_volume({
                "id": migration_id, "name": source["name"], "size": source["size"],
                "host": dest_host, "status": models.STATUS_CREATING,
                "migration_status": models.TARGET_PREFIX + volume_id,
                "project_id": rt.settings.hidden_project,
            })
        try:
            update = driver.create_volume(volume_ref(dest))
        except Exception as exc:
            raise MigrationFailed(
                f"creating the destination volume on {dest_host} failed: {exc}") from exc
        rt.db.update_volume(migration_id, dict(update, status=models.STATUS_AVAILABLE))
        self._record_identity(rt, driver, migration_id, dest_host)
        return migration_id

    @staticmethod
    def _record_identity(rt, driver, migration_id: str, dest_host: str) -> None:
        """Which object was made, so that the object proven before the source is
        deleted is the one written (see ProveDestination)."""
        try:
            identity = identity_text(driver, rt.db.get_volume(migration_id))
        except Exception as exc:
            raise MigrationFailed(f"the destination volume just created on {dest_host} "
                                  f"cannot be found: {exc}") from exc
        rt.db.update_volume(migration_id, {"provider_id": identity})

    def revert(self, migration_id: str, *args, **kwargs) -> None:
        problem = destination.remove(migration_id)
        if problem:  # the volume must end usable all the same: keep reverting
            runtime.get().tracker(migration_id).cleanup_problems.append(problem)


class ConnectVolume(task.Task):
    """Make one side of the copy reachable from this host."""

    def __init__(self, writable: bool, **kwargs) -> None:
        super().__init__(inject={"writable": writable}, **kwargs)

    def execute(self, migration_id: str, volume_id: str, writable: bool) -> dict:
        rt = runtime.get()
        rt.tracker(migration_id).check_abort()
        row = rt.db.get_volume(volume_id)
        try:
            return rt.driver_for_host(row["host"]).connect_volume(volume_ref(row), writable)
        except Exception as exc:
            side = "destination" if writable else "source"
            raise MigrationFailed(
                f"connecting the {side} volume on {row['host']} failed: {exc}") from exc

    def revert(self, migration_id: str, volume_id: str, result, *args, **kwargs) -> None:
        if not isinstance(result, dict):
            return  # connect itself failed: nothing to undo
        rt = runtime.get()
        row = rt.db.get_volume(volume_id)
        if row is None:
            return
        try:
            rt.driver_for_host(row["host"]).disconnect_volume(volume_ref(row), result)
        except Exception as exc:
            _cleanup_problem(migration_id, f"disconnecting {volume_id} failed: {exc}")


class DisconnectVolume(task.Task):
    """Release one side of the copy once the data is on the destination."""

    def execute(self, migration_id: str, volume_id: str, connection: dict) -> None:
        rt = runtime.get()
        row = rt.db.get_volume(volume_id)
        try:
            rt.driver_for_host(row["host"]).disconnect_volume(volume_ref(row), connection)
        except Exception as exc:
            raise MigrationFailed(f"disconnecting volume {volume_id} failed: {exc}") from exc


class CompleteMigration(task.Task):
    """Make the migrated data the volume's data, then delete the old source data.

    The swap is one transaction, and the old data is deleted only after it:
    at no moment does the volume point at data that no longer exists.
    """

    def execute(self, migration_id: str, volume_id: str, dest_volume_id: str) -> None:
        rt = runtime.get()
        rt.tracker(migration_id).check_abort()
        rt.db.update_volume(volume_id, {"migration_status": models.MIGRATION_COMPLETING})
        old = rt.db.get_volume(dest_volume_id)
        if old is None:
            return  # a restart came after the last step: nothing is left to do
        if rt.db.get_volume(volume_id)["name_id"] != dest_volume_id:  # not swapped yet
            if not rt.db.swap_volume_data(volume_id, dest_volume_id):
                raise MigrationFailed("the source or destination volume disappeared")
            old = rt.db.get_volume(dest_volume_id)  # now names the old source data
        try:
            rt.driver_for_host(old["host"]).delete_volume(volume_ref(old))
        except Exception as exc:
            # Put the source back on its (intact) data; the destination is
            # then removed by the revert of CreateDestinationVolume.
            rt.db.swap_volume_data(volume_id, dest_volume_id)
            raise MigrationFailed(
                f"deleting the source data on {old['host']} failed: {exc}") from exc
        rt.db.delete_volume_row(dest_volume_id)
