"""The copy of the data and the progress monitor that runs beside it."""

from __future__ import annotations

import os
import stat
import time

from oslo_log import log as logging
from taskflow import task

from volmigrate.db import models
from volmigrate.drivers.base import LOCAL_PATH_ACCESS
from volmigrate.flows import constants as c
from volmigrate.flows import reporting, runtime, verifying
from volmigrate.flows.copying import DdCopy, FileCopy, KernelCopy
from volmigrate.flows.exceptions import MigrationFailed
from volmigrate.flows.volume_tasks import volume_ref

LOG = logging.getLogger(__name__)


def _regular_fd(handle) -> int | None:
    """The descriptor of a regular file (whose holes can be asked), else None."""
    try:
        fd = handle.fileno()
    except (OSError, ValueError):
        return None
    return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None


class CopyVolumeData(task.Task):
    """Copy the source to the destination: dd between paths, else file I/O.

    Re-run after a crash, it starts from the migration's last durable
    checkpoint (``bytes_copied`` on the row), not from byte 0. Its result is
    the number of bytes this run wrote, kept with the flow.
    """

    default_provides = c.BYTES_COPIED

    def execute(self, migration_id: str, volume_id: str, dest_volume_id: str,
                volume_size: int, source_connection: dict, dest_connection: dict) -> int:
        rt = runtime.get()
        tracker = rt.tracker(migration_id)
        succeeded = False
        try:
            tracker.check_abort()
            self._check_connection(rt, volume_id, source_connection)
            self._check_connection(rt, dest_volume_id, dest_connection)
            rt.db.update_volume(volume_id, {"migration_status": models.MIGRATION_MIGRATING})
            settings = rt.settings
            checkpoint = rt.db.get_migration(migration_id)["bytes_copied"] or 0
            start = min(checkpoint - checkpoint % settings.dd_blocksize, volume_size)
            if checkpoint >= volume_size:
                start = volume_size
            if start:
                LOG.info("Migration %s: resuming the copy at byte %d of %d (last durable "
                         "checkpoint)", migration_id, start, volume_size)
            dest_row = rt.db.get_volume(dest_volume_id)
            kwargs = {
                # Skipping zero blocks is safe only where the destination reads zeros.
                "sparse": rt.driver_for_host(dest_row["host"]).new_volumes_read_zeros(),
                "start": start, "checkpoint_bytes": settings.checkpoint_bytes,
                "on_checkpoint": lambda done: rt.db.update_migration(
                    migration_id, {"bytes_copied": done}),
                "abort_reason": lambda: tracker.abort_reason or "migration aborted",
            }
            if (source_connection["access"] in LOCAL_PATH_ACCESS
                    and dest_connection["access"] in LOCAL_PATH_ACCESS):
                method = KernelCopy if settings.copy_method in ("auto", "kernel") else DdCopy
                if method is KernelCopy:
                    kwargs["hole_map"] = source_connection.get("backing_file")
                copier = method(source_connection["path"], dest_connection["path"],
                                volume_size, settings.dd_blocksize, settings.bps_limit,
                                tracker.abort_event, **kwargs)
                LOG.info("Migration %s: copying with %s", migration_id, method.__name__)
                tracker.copy_started(copier.position)
                written = copier.run()
            else:
                with self._open(rt, volume_id, source_connection, False) as src, \
                        self._open(rt, dest_volume_id, dest_connection, True) as dst:
                    copier = FileCopy(src, dst, volume_size, settings.dd_blocksize,
                                      settings.bps_limit, tracker.abort_event, **kwargs)
                    tracker.copy_started(copier.position)
                    written = copier.run()
            LOG.info("Migration %s: the copy wrote %d bytes (from byte %d of %d)",
                     migration_id, written, start, volume_size)
            if settings.verify == "checksum":
                self._verify(rt, tracker, migration_id, volume_id, dest_volume_id,
                             volume_size, source_connection, dest_connection)
            succeeded = True
            return written
        finally:
            tracker.copy_finished(succeeded)

    def _verify(self, rt, tracker, migration_id: str, volume_id: str, dest_volume_id: str,
                size: int, source_connection: dict, dest_connection: dict) -> None:
        """Compare both sides' digests; a mismatch fails the migration, keeping the source."""
        started = time.monotonic()
        with self._open(rt, volume_id, source_connection, False) as src, \
                self._open(rt, dest_volume_id, dest_connection, False) as dst:
            try:
                verifying.drop_cache(dst.fileno())
            except (OSError, ValueError):
                pass  # a file-like object: its flush() was the sync
            fds = [_regular_fd(src), _regular_fd(dst)]
            regions = verifying.regions_to_check(fds[0], fds[1], size)
            reason = lambda: tracker.abort_reason or "migration aborted"  # noqa: E731
            source_digest, dest_digest = verifying.digests(src, dst, regions,
                                                           tracker.abort_event, reason)
        checked = sum(length for _, length in regions)
        if source_digest != dest_digest:
            raise MigrationFailed(
                f"verification failed: the copy differs from the source (XXH3-128 "
                f"{source_digest} at the source, {dest_digest} at the destination); the "
                f"source is kept")
        LOG.info("Migration %s: verified %d bytes in %.2f s (XXH3-128 %s)", migration_id,
                 checked, time.monotonic() - started, source_digest)

    @staticmethod
    def _check_connection(rt, volume_id: str, connection: dict) -> None:
        """A connection saved before a restart may be gone (a loop device after a reboot)."""
        row = rt.db.get_volume(volume_id)
        if not rt.driver_for_host(row["host"]).connection_valid(volume_ref(row), connection):
            raise MigrationFailed(
                f"the connection to volume {volume_id} ({connection.get('path')}) no longer "
                f"reaches it; it did not survive the restart")

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


class MonitorProgress(task.Task):
    """Report the copy's progress every interval; end when the copy ends.

    A report is made only when the copy moved since the last one, so the
    reports of one migration have strictly increasing byte counts.
    """

    def execute(self, migration_id: str, volume_id: str, volume_size: int) -> int:
        rt = runtime.get()
        tracker = rt.tracker(migration_id)
        migration = rt.db.get_migration(migration_id)
        if migration["bytes_copied"] >= volume_size:
            # Re-run after a restart that came once the copy had finished (its
            # last act is recording the full size): it will not run again.
            if migration["progress_bytes"] < volume_size:
                self._report(migration_id, volume_id, volume_size, volume_size)
            return 0
        interval = rt.settings.progress_interval
        last = None
        reports = 0
        while not tracker.copy_done.wait(interval):
            position = tracker.position()
            if position is None or position == last:
                continue
            self._report(migration_id, volume_id, position, volume_size)
            last, reports = position, reports + 1
        if tracker.copy_succeeded and last != volume_size:
            self._report(migration_id, volume_id, volume_size, volume_size)
            reports += 1
        return reports

    def _report(self, migration_id: str, volume_id: str, position: int, total: int) -> None:
        reporting.report_progress(migration_id, volume_id, position, total)
        # Also TaskFlow's own progress of this atom, persisted with the flow.
        self.update_progress(min(1.0, position / total) if total else 1.0)
