"""The copy of the data, the proof of the destination, and the progress monitor.

The data itself is moved and hashed by :mod:`volmigrate.flows.datamover`;
these tasks choose how, feed it the migration's checkpoint and abort switch,
and turn its errors into the migration's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator

from oslo_log import log as logging
from taskflow import task

from volmigrate.common.volumes import identity_text, volume_ref
from volmigrate.db import models
from volmigrate.drivers.base import LOCAL_PATH_ACCESS, open_device_or_file
from volmigrate.flows import constants as c
from volmigrate.flows import reporting, runtime
from volmigrate.flows.datamover import (
    CopyAborted,
    CopyParked,
    DataMoverError,
    DdCopy,
    FileCopy,
    KernelCopy,
    verify,
)
from volmigrate.flows.exceptions import MigrationAborted, MigrationFailed

LOG = logging.getLogger(__name__)


@contextlib.contextmanager
def _as_migration_errors(tracker: runtime.Tracker) -> Iterator[None]:
    """Raise the data mover's errors as the migration's own, with the same text.

    Only the flows' errors are taken as written for administrators (the
    first task's revert records their text as the reason as it stands); the
    data mover's error stays attached as the cause, with its traceback. A
    copy stopped for a restart is not an error: its thread stays parked.
    """
    try:
        yield
    except (CopyParked, CopyAborted) as exc:
        if tracker.parking:
            LOG.info("Stopping for a restart: %s", exc)
            tracker.stay_parked()
        if isinstance(exc, CopyParked):
            raise MigrationAborted("the copy was stopped for a restart") from exc
        raise MigrationAborted(str(exc)) from exc
    except DataMoverError as exc:
        raise MigrationFailed(str(exc)) from exc


class CopyVolumeData(task.Task):
    """Copy the source to the destination.

    Between two local paths the copy is the kernel's (``copy_method`` auto
    or kernel, the default) or dd's (``copy_method = dd``); where a side
    gives only a file-like object it is file I/O. Re-run after a crash, it
    starts from the migration's last durable checkpoint (``bytes_durable`` on
    the row), not from byte 0. Its result is the number of bytes this run
    wrote, kept with the flow.
    """

    default_provides = c.BYTES_WRITTEN

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
            checkpoint = rt.db.get_migration(migration_id)["bytes_durable"] or 0
            start = min(checkpoint - checkpoint % settings.block_size, volume_size)
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
                    migration_id, {"bytes_durable": done}),
                "abort_reason": lambda: tracker.abort_reason or "migration aborted",
                "parking": lambda: tracker.parking,
            }
            if (source_connection["access"] in LOCAL_PATH_ACCESS
                    and dest_connection["access"] in LOCAL_PATH_ACCESS):
                method = KernelCopy if settings.copy_method in ("auto", "kernel") else DdCopy
                if method is KernelCopy:
                    kwargs["hole_map"] = source_connection.get("backing_file")
                copier = method(source_connection["path"], dest_connection["path"],
                                volume_size, settings.block_size, settings.bps_limit,
                                tracker.abort_event, **kwargs)
                LOG.info("Migration %s: copying with %s", migration_id, method.__name__)
                tracker.copy_started(copier.position)
                with _as_migration_errors(tracker):
                    written = copier.run()
            else:
                with self._open(rt, volume_id, source_connection, False) as src, \
                        self._open(rt, dest_volume_id, dest_connection, True) as dst:
                    copier = FileCopy(src, dst, volume_size, settings.block_size,
                                      settings.bps_limit, tracker.abort_event, **kwargs)
                    tracker.copy_started(copier.position)
                    with _as_migration_errors(tracker):
                        written = copier.run()
            LOG.info("Migration %s: the copy wrote %d bytes (from byte %d of %d)",
                     migration_id, written, start, volume_size)
            succeeded = True
            return written
        finally:
            tracker.copy_finished(succeeded)

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
        try:
            if connection["access"] in LOCAL_PATH_ACCESS:
                return open_device_or_file(connection["path"], writable)
            return driver.open_connection(connection, writable)
        except Exception as exc:
            raise MigrationFailed(f"opening volume {volume_id} for copy failed: {exc}") from exc


class ProveDestination(task.Task):
    """Prove the copy is where the volume will point before its source can go.

    The destination is found afresh through its driver (never through a
    handle or loop device held since the copy began, which keeps a deleted
    file readable), must be the very object that was created and written
    (its identity, recorded in ``provider_id``), at least the volume's size,
    and is made durable. With ``migration_verify = checksum`` both sides are
    hashed through such fresh handles. Any doubt fails the migration, and its
    revert keeps the source.
    """

    def execute(self, migration_id: str, volume_id: str, dest_volume_id: str,
                volume_size: int) -> None:
        rt = runtime.get()
        tracker = rt.tracker(migration_id)
        tracker.check_abort()
        dest = rt.db.get_volume(dest_volume_id)
        if dest is None or rt.db.get_volume(volume_id)["name_id"] == dest_volume_id:
            return  # swapped before a restart: proven then
        driver = rt.driver_for_host(dest["host"])
        where = f"the destination volume on {dest['host']}"
        self._check_identity(driver, dest, where)
        try:
            handle = driver.open_volume(volume_ref(dest))
        except Exception as exc:
            raise MigrationFailed(f"{where} cannot be opened any more ({exc}); the source "
                                  f"is kept") from exc
        with handle:
            try:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(0)
            except (OSError, ValueError) as exc:
                raise MigrationFailed(f"{where} cannot be read ({exc}); the source is "
                                      f"kept") from exc
            if size < volume_size:
                raise MigrationFailed(f"{where} holds {size} bytes, fewer than the volume's "
                                      f"{volume_size}; the source is kept")
            self._make_durable(handle, where)
            if rt.settings.verify == "checksum":
                self._verify(rt, tracker, migration_id, volume_id, handle, volume_size)
        # Replaced while it was being read: the object checked is not the one kept.
        self._check_identity(driver, dest, where)

    @staticmethod
    def _check_identity(driver, dest: dict, where: str) -> None:
        try:
            found = json.loads(identity_text(driver, dest))
        except Exception as exc:
            raise MigrationFailed(f"{where} is gone ({exc}): it was removed during the copy; "
                                  f"the source is kept") from exc
        recorded = json.loads(dest["provider_id"]) if dest["provider_id"] else None
        if recorded is not None and found != recorded:
            raise MigrationFailed(
                f"{where} is not the object that was written (it was replaced during the "
                f"copy: created as {recorded}, found {found}); the source is kept")

    @staticmethod
    def _make_durable(handle, where: str) -> None:
        try:
            handle.flush()
            fd = handle.fileno()
        except (OSError, ValueError, AttributeError):
            return  # a file-like object: its flush() was the sync
        try:
            os.fsync(fd)
        except OSError as exc:
            raise MigrationFailed(f"{where} cannot be made durable ({exc}); the source is "
                                  f"kept") from exc

    def _verify(self, rt, tracker, migration_id: str, volume_id: str, dest, size: int) -> None:
        """Compare both sides' digests; a mismatch fails the migration, keeping the source."""
        started = time.monotonic()
        source = rt.db.get_volume(volume_id)
        try:
            src = rt.driver_for_host(source["host"]).open_volume(volume_ref(source))
        except Exception as exc:
            raise MigrationFailed(f"the source cannot be opened for verification: "
                                  f"{exc}") from exc
        with src:
            try:
                verify.drop_cache(dest.fileno())
            except (OSError, ValueError, AttributeError):
                pass  # a file-like object: its flush() was the sync
            regions = verify.regions_to_check(src, dest, size)
            reason = lambda: tracker.abort_reason or "migration aborted"  # noqa: E731
            try:
                with _as_migration_errors(tracker):
                    source_digest, dest_digest = verify.digests(src, dest, regions,
                                                                tracker.abort_event, reason)
            except OSError as exc:
                raise MigrationFailed(f"verification could not read the volumes: {exc}; "
                                      f"the source is kept") from exc
        checked = sum(length for _, length in regions)
        if source_digest != dest_digest:
            raise MigrationFailed(
                f"verification failed: the copy differs from the source (XXH3-128 "
                f"{source_digest} at the source, {dest_digest} at the destination); the "
                f"source is kept")
        LOG.info("Migration %s: verified %d bytes in %.2f s (XXH3-128 %s)", migration_id,
                 checked, time.monotonic() - started, source_digest)


class MonitorProgress(task.Task):
    """Report the copy's progress every interval; end when the copy ends.

    A report is made only when the copy moved since the last one, so the
    reports of one migration have strictly increasing byte counts.
    """

    def execute(self, migration_id: str, volume_id: str, volume_size: int) -> int:
        rt = runtime.get()
        tracker = rt.tracker(migration_id)
        migration = rt.db.get_migration(migration_id)
        if migration["bytes_durable"] >= volume_size:
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
