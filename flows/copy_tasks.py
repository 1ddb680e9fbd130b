"""The copy of the data and the progress monitor that runs beside it."""

from __future__ import annotations

from taskflow import task

from volmigrate.db import models
from volmigrate.drivers.base import LOCAL_PATH_ACCESS
from volmigrate.flows import constants as c
from volmigrate.flows import reporting, runtime
from volmigrate.flows.copying import DdCopy, FileCopy
from volmigrate.flows.exceptions import MigrationFailed
from volmigrate.flows.volume_tasks import volume_ref


class CopyVolumeData(task.Task):
    """Copy the source to the destination: dd between paths, else file I/O."""

    default_provides = c.BYTES_COPIED

    def execute(self, migration_id: str, volume_id: str, dest_volume_id: str,
                volume_size: int, source_connection: dict, dest_connection: dict) -> int:
        rt = runtime.get()
        tracker = rt.tracker(migration_id)
        succeeded = False
        try:
            tracker.check_abort()
            rt.db.update_volume(volume_id, {"migration_status": models.MIGRATION_MIGRATING})
            rt.db.update_migration(migration_id, {"bytes_total": volume_size})
            reason = lambda: tracker.abort_reason or "migration aborted"  # noqa: E731
            settings = rt.settings
            if (source_connection["access"] in LOCAL_PATH_ACCESS
                    and dest_connection["access"] in LOCAL_PATH_ACCESS):
                copier = DdCopy(source_connection["path"], dest_connection["path"],
                                volume_size, settings.dd_blocksize, settings.bps_limit,
                                tracker.abort_event, reason)
                tracker.copy_started(copier.position)
                copied = copier.run()
            else:
                copied = self._file_copy(rt, tracker, volume_id, dest_volume_id, volume_size,
                                         source_connection, dest_connection, reason)
            succeeded = True
            return copied
        finally:
            tracker.copy_finished(succeeded)

    @staticmethod
    def _open(rt, volume_id: str, connection: dict, writable: bool):
        row = rt.db.get_volume(volume_id)
        driver = rt.driver_for_host(row["host"])
        if connection["access"] in LOCAL_PATH_ACCESS:
            return open(connection["path"], "r+b" if writable else "rb")
        try:
            return driver.open_connection(connection, writable)
        except Exception as exc:
            raise MigrationFailed(f"opening volume {volume_id} for copy failed: {exc}") from exc

    def _file_copy(self, rt, tracker, volume_id, dest_volume_id, size, src_conn, dst_conn,
                   reason) -> int:
        with self._open(rt, volume_id, src_conn, False) as src, \
                self._open(rt, dest_volume_id, dst_conn, True) as dst:
            copier = FileCopy(src, dst, size, rt.settings.dd_blocksize,
                              rt.settings.bps_limit, tracker.abort_event, reason)
            tracker.copy_started(copier.position)
            return copier.run()


class MonitorProgress(task.Task):
    """Report the copy's progress every interval; end when the copy ends.

    A report is made only when the copy moved since the last one, so the
    reports of one migration have strictly increasing byte counts.
    """

    def execute(self, migration_id: str, volume_id: str, volume_size: int) -> int:
        rt = runtime.get()
        tracker = rt.tracker(migration_id)
        interval = rt.settings.progress_interval
        last = None
        reports = 0
        while not tracker.copy_done.wait(interval):
            position = tracker.position()
            if position is None or position == last:
                continue
            reporting.report_progress(migration_id, volume_id, position, volume_size)
            last, reports = position, reports + 1
        if tracker.copy_succeeded and last != volume_size:
            reporting.report_progress(migration_id, volume_id, volume_size, volume_size)
            reports += 1
        return reports
