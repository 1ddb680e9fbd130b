"""Tasks of the driver-assisted migration: the storage moves the data itself.

An array (Storwize ``migratevdisk``) moves a volume between its pools while
the volume stays online, and cannot be told to stop half way; Ceph moves an
image to another pool of its cluster (live migration), and can abort until
it commits. These tasks never copy anything: they start the move, wait for
the storage to finish it, make it final, and then record where the data is.
Every one of them can run again after a crash: a move already running is
waited for (or taken up again where the storage allows), never started twice.

A move into another backend that could not be aborted (the storage did not
answer) is recorded as that backend's leftover: a hidden row, status
`error`, named for the volume's backend object, whose delete through the
destination's driver aborts the move. `volmigrate recover` / `cleanup`
remove it once the storage answers, and so does the volume's next move.
"""

from __future__ import annotations

import tenacity
from oslo_log import log as logging
from taskflow import task

from volmigrate.common.hosts import parse_host
from volmigrate.common.volumes import volume_ref
from volmigrate.db import models
from volmigrate.drivers.base import VolumeDriver, move_target, object_id
from volmigrate.flows import constants as c
from volmigrate.flows import destination, runtime
from volmigrate.flows.exceptions import MigrationAborted, MigrationFailed

LOG = logging.getLogger(__name__)

# How often the wait asks the backend whether its move has ended: soon at first
# (a small volume moves in a moment), then less often, up to once a second.
POLL_FIRST_SECONDS = 0.05
POLL_MAX_SECONDS = 1.0
# Backend errors tolerated in a row while waiting (the driver retries each call too).
MAX_POLL_ERRORS = 5


def pool_of(host: str) -> str:
    return parse_host(host).pool or ""


def with_pool(host: str, pool: str) -> str:
    return str(parse_host(host).with_pool(pool))


class _ErrorsInARow:
    """A tenacity stop: after ``limit`` failed polls in a row.

    Not tenacity's stop_after_attempt, which counts every poll: a move is
    polled for as long as it takes, and an answer between two errors (the
    array back after a restart) starts the count again.
    """

    def __init__(self, limit: int) -> None:
        self.limit, self.errors = limit, 0

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        self.errors = self.errors + 1 if state.outcome.failed else 0
        return self.errors >= self.limit


def wait_until_moved(driver: VolumeDriver, ref: dict, migration_id: str,
                     check_abort=lambda: None) -> None:
    """Poll the backend until its move has ended (its progress is None).

    Raises MigrationFailed when MAX_POLL_ERRORS polls in a row fail: the
    move may well go on, but nothing here can tell when it ends.
    `check_abort` raises MigrationAborted to stop waiting (a cancel).
    """
    def warn(state: tenacity.RetryCallState) -> None:
        if state.outcome.failed:
            LOG.warning("Migration %s: asking the backend for the move's progress failed "
                        "(%s); asking again", migration_id, state.outcome.exception())

    def poll(ref: dict):
        check_abort()
        return driver.get_migration_progress(ref)

    polling = tenacity.Retrying(
        retry=tenacity.retry_if_not_exception_type(MigrationAborted)
        | tenacity.retry_if_result(lambda progress: progress is not None),
        wait=tenacity.wait_exponential(multiplier=POLL_FIRST_SECONDS,
                                       max=min(POLL_MAX_SECONDS, driver.move_poll_seconds)),
        stop=_ErrorsInARow(MAX_POLL_ERRORS), before_sleep=warn, reraise=True)
    try:
        polling(poll, ref)
    except MigrationAborted:
        raise
    except Exception as exc:
        raise MigrationFailed(f"lost track of the backend's move: {exc}") from exc


def _volume(rt: runtime.Runtime, volume_id: str) -> tuple[dict, object]:
    row = rt.db.get_volume(volume_id)
    return row, rt.driver_for_host(row["host"])


def target_of(rt: runtime.Runtime, driver: VolumeDriver, dest_host: str) -> str:
    """The move's target: a pool of the backend, or another backend's location."""
    target = move_target(driver, rt.driver_for_host(dest_host), pool_of(dest_host))
    if target is None:
        raise MigrationFailed(f"backend of {dest_host} is no target of a move by the "
                              f"source's backend any more (its configuration changed)")
    return target


def _record_unaborted_move(rt: runtime.Runtime, migration_id: str, volume: dict,
                           driver: VolumeDriver, dest_host: str) -> str | None:
    """Keep the destination of a move that could not be aborted as a leftover row."""
    if parse_host(dest_host).backend == parse_host(volume["host"]).backend:
        return None  # a pool of the same backend: the volume's own row tells where it is
    if rt.db.get_volume(migration_id) is None:
        target = target_of(rt, driver, dest_host)
        rt.db.create_volume(dict(
            driver.moved_within_backend(volume_ref(volume), target),
            id=migration_id, name=volume["name"], size=volume["size"], host=dest_host,
            name_id=object_id(volume), status=models.STATUS_ERROR,
            migration_status=models.TARGET_PREFIX + volume["id"],
            project_id=rt.settings.hidden_project))
    return (f"its destination on {dest_host} is kept as a leftover; `volmigrate recover` "
            f"or `volmigrate cleanup` aborts the move once the backend answers")


def _undo_unaborted_moves(rt: runtime.Runtime, migration_id: str, volume_id: str) -> None:
    """Abort the moves of earlier migrations of the volume that stayed in the storage.

    Otherwise this move would take one of them up, wherever it went.
    """
    for row in rt.db.list_volumes(include_hidden=True, status=models.STATUS_ERROR,
                                  migration_status=models.TARGET_PREFIX + volume_id):
        earlier = rt.db.get_migration(row["id"])
        if row["id"] == migration_id or earlier is None \
                or earlier["case"] != c.CASE_DRIVER_ASSISTED:
            continue
        # Claimed as engine/leftovers.py claims it: one process removes it.
        if not rt.db.update_volume(row["id"], {"status": models.STATUS_DELETING},
                                   {"status": models.STATUS_ERROR}):
            continue
        problem = destination.remove(row["id"])  # its delete aborts the move
        if problem:
            raise MigrationFailed(f"the move of migration {row['id']} to {row['host']} "
                                  f"is still in the storage and could not be aborted: "
                                  f"{problem}")
        LOG.warning("Migration %s: the move of the earlier migration %s to %s was aborted",
                    migration_id, row["id"], row["host"])


class StartDriverMove(task.Task):
    """Ask the backend to move the volume to the destination pool.

    On revert (a later step failed) the move is aborted where the backend can
    (a leftover is recorded where it could but failed); where it cannot, the
    volume's host is set to the pool its data is really in, so that the
    database never points at the wrong pool.
    """

    def execute(self, migration_id: str, volume_id: str, dest_host: str) -> None:
        rt = runtime.get()
        rt.tracker(migration_id).check_abort()
        volume, driver = _volume(rt, volume_id)
        rt.db.update_volume(volume_id, {"migration_status": models.MIGRATION_MIGRATING})
        _undo_unaborted_moves(rt, migration_id, volume_id)
        target = target_of(rt, driver, dest_host)
        try:
            driver.migrate_within_backend(volume_ref(volume), target)
        except Exception as exc:
            raise MigrationFailed(f"starting the backend's move of the volume to "
                                  f"{target} failed: {exc}") from exc
        LOG.info("Migration %s: backend move of volume %s to %s started",
                 migration_id, volume_id, target)

    def revert(self, migration_id: str, volume_id: str, dest_host: str, *args,
               **kwargs) -> None:
        rt = runtime.get()
        volume, driver = _volume(rt, volume_id)
        try:
            if driver.abort_move(volume_ref(volume)):
                LOG.warning("Migration %s: the backend's move of volume %s was aborted; "
                            "it stays where it was", migration_id, volume_id)
                return
        except Exception as exc:
            text = f"the backend's move of volume {volume_id} could not be aborted: {exc}"
            try:
                kept = _record_unaborted_move(rt, migration_id, volume, driver, dest_host)
            except Exception as record_exc:  # noqa: BLE001 - the reason says what is left
                kept = f"it could not be recorded as a leftover either: {record_exc}"
            if kept:
                text = f"{text}; {kept}"
            LOG.error("Migration %s: %s", migration_id, text)
            rt.tracker(migration_id).cleanup_problems.append(text)
        try:
            target = target_of(rt, driver, dest_host)
            actual = driver.volume_pool(volume_ref(volume), target)
        except Exception as exc:
            text = f"the pool of volume {volume_id} could not be read back: {exc}"
            LOG.error("Migration %s: %s", migration_id, text)
            rt.tracker(migration_id).cleanup_problems.append(text)
            return
        if target != pool_of(dest_host):  # a move to another backend of the same storage
            if actual == target:  # moved for good: it could not be aborted
                updates = driver.moved_within_backend(volume_ref(volume), actual)
                rt.db.update_volume(volume_id, dict(updates, host=dest_host))
                LOG.warning("Migration %s: volume %s is on %s after all; host updated",
                            migration_id, volume_id, dest_host)
        elif actual != pool_of(volume["host"]):
            updates = driver.moved_within_backend(volume_ref(volume), actual)
            rt.db.update_volume(volume_id, dict(updates, host=with_pool(volume["host"], actual)))
            LOG.warning("Migration %s: volume %s is in pool %s after all; host updated",
                        migration_id, volume_id, actual)


class WaitForDriverMove(task.Task):
    """Wait until the backend's move has ended, and check where the data went.

    It also feeds the progress monitor: while it waits, the monitor's
    position is the backend's own report, when the backend can give one
    (capability ``migration_progress_report``).
    """

    def execute(self, migration_id: str, volume_id: str, dest_host: str,
                volume_size: int) -> None:
        rt = runtime.get()
        tracker = rt.tracker(migration_id)
        volume, driver = _volume(rt, volume_id)
        ref = volume_ref(volume)
        succeeded = False
        try:
            try:
                reports = driver.get_volume_stats().get("migration_progress_report")
            except Exception as exc:  # the polls below tell whether it is lost for good
                LOG.warning("Migration %s: the backend's capabilities cannot be read (%s); "
                            "its progress will not be reported", migration_id, exc)
                reports = False
            target = target_of(rt, driver, dest_host)
            try:
                # Again after a restart: a move the killed process left half done
                # goes on where the storage allows (nothing happens otherwise).
                driver.migrate_within_backend(ref, target)
            except Exception as exc:  # the polls below tell whether the move is lost
                LOG.warning("Migration %s: asking the backend to go on with its move "
                            "failed (%s); waiting for it all the same", migration_id, exc)
            if reports:
                tracker.copy_started(lambda: self._moved(driver, ref))
            check_abort = tracker.check_abort if driver.can_abort_moves else (lambda: None)
            wait_until_moved(driver, ref, migration_id, check_abort)
            try:
                driver.complete_move(ref, target)
            except Exception as exc:
                raise MigrationFailed(f"the backend's move could not be completed: "
                                      f"{exc}") from exc
            actual = driver.volume_pool(ref, target)
            if actual != target:
                raise MigrationFailed(f"the backend's move ended with the volume in "
                                      f"{actual}, not {target}")
            rt.db.update_migration(migration_id, {"bytes_durable": volume_size})
            succeeded = True
        finally:
            tracker.copy_finished(succeeded)

    @staticmethod
    def _moved(driver, ref: dict) -> int | None:
        try:
            progress = driver.get_migration_progress(ref)
        except Exception as exc:  # the wait decides what a lost backend means
            LOG.debug("Progress of the backend move unavailable: %s", exc)
            return None
        return None if progress is None else progress[0]


class UpdateVolumeHost(task.Task):
    """Record the volume's new pool: the data moved, its backend object did not."""

    def execute(self, migration_id: str, volume_id: str, dest_host: str) -> None:
        rt = runtime.get()
        volume, driver = _volume(rt, volume_id)
        if volume["host"] == dest_host:
            return  # recorded before a restart
        updates = driver.moved_within_backend(volume_ref(volume),
                                              target_of(rt, driver, dest_host))
        rt.db.update_volume(volume_id, dict(updates, host=dest_host,
                                            migration_status=models.MIGRATION_COMPLETING))
