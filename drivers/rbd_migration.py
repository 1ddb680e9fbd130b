"""Ceph's live migration of an image to another pool of the same cluster.

``rbd migration prepare`` links a new image in the destination pool to the
source (clients are sent to it at once), ``execute`` deep-copies the
objects, ``commit`` removes the source; until the commit, ``abort`` puts
everything back. Its state lives in the cluster, not in this process, so
every step here first asks the cluster where the image stands and does only
what is left: a flow resumed after a kill -9 finishes the same migration,
or aborts it, never starts a second one.

librbd's execute blocks and cannot be interrupted (its progress callback's
answer is ignored, measured here), so it runs in a thread of its own; a
cancel waits for it to end and then aborts. After a killed process, execute
runs again from where the cluster stands; librbd waits for the dead
client's exclusive lock to expire first (``osd_client_watch_timeout``, 30 s
by default). librbd's rbd_qos_* limits do not slow execute (measured: a
256 MiB image moves in 1 to 2 s with rbd_qos_bps_limit = 4 MiB/s).

librbd's execute can also wait for ever, although every librados operation
is bounded by ``rados_connect_timeout``: once, with the OSD stopped, it had
not ended 300 s later. So an execute whose progress has not moved for
STALL_TIMEOUTS timeouts is looked after: when the destination or the source
pool does not answer a read either (one object's stat: a sign, not a proof,
on a cluster of many OSDs), the move is lost for this process (the flow
fails and keeps a leftover, which a later clean-up aborts); when one does,
execute is only slow and is waited for.

Execute writes into the destination pool with librados's "full try": a pool
at its quota (or a full cluster) fails it at once with EDQUOT (ENOSPC)
instead of holding it until the operation timeout.

A migration that could not be aborted (the cluster did not answer) stays in
the cluster, its image visible in neither pool under the volume's name but
the destination's; deleting the image from either pool
(:meth:`LiveMigrations.abort_image`, called by the driver's
``delete_volume``) aborts it first, so a later clean-up puts it back.
"""

from __future__ import annotations

import errno
import os
import threading
import time

from oslo_log import log as logging

from volmigrate.drivers.exceptions import DriverError
from volmigrate.drivers import rbd_trash
from volmigrate.drivers.rbd_client import bindings, explain

LOG = logging.getLogger(__name__)

# A commit or an abort finding the image busy is tried again, for about 40 s
# in all: another client may have it open for a moment (a `rbd status`, a
# progress query), or a client that lost the cluster (an OSD restarted under
# it, a process killed) still has a watch on it until osd_client_watch_timeout
# (30 s by default) expires.
BUSY_ATTEMPTS = 25

# An execute whose progress has not moved for this many rados_connect_timeouts
# is checked on: the cluster is asked a bounded question (see the module's doc).
STALL_TIMEOUTS = 2


def _failure(exc: Exception, timeout: int) -> str:
    """librbd's error in words (its Python binding's own text can name the wrong call)."""
    code = getattr(exc, "errno", None)
    if not code:
        return str(exc)
    return explain(exc, timeout).replace(str(exc), f"{os.strerror(code)} (errno {code})")


def _while_busy(call, what: str, timeout: int, unlock=lambda: 0) -> None:
    """Run `call`; while the image is busy, again (BUSY_ATTEMPTS in all), at once
    when `unlock()` broke a stale lock of this process."""
    _, rbd = bindings()
    for attempt in range(BUSY_ATTEMPTS):
        try:
            call()
            return
        except rbd.ImageBusy as exc:
            if attempt + 1 == BUSY_ATTEMPTS:
                raise DriverError(f"{what} failed: the image stays in use by another "
                                  f"client ({exc})") from None
            if not unlock():
                time.sleep(min(2.0, 0.1 * 2 ** attempt))
        except rbd.Error as exc:
            raise DriverError(f"{what} failed: {_failure(exc, timeout)}") from None


class _Execute(threading.Thread):
    """One ``migration_execute``, with its progress in bytes."""

    def __init__(self, ioctx, name: str, size: int, timeout: int) -> None:
        super().__init__(name=f"rbd-migration-{name}", daemon=True)
        self.ioctx, self.image, self.size, self.timeout = ioctx, name, size, timeout
        self.pool = ioctx.get_pool_name()
        self.done = 0
        self.error: str | None = None
        self.errno: int | None = None
        self.moved_at = self.answered_at = time.monotonic()

    def _progress(self, offset: int, total: int) -> int:
        # librbd counts objects, not bytes.
        done = self.size * offset // total if total else 0
        if done != self.done:
            self.done, self.moved_at = done, time.monotonic()
        return 0

    def run(self) -> None:
        _, rbd = bindings()
        try:
            self.ioctx.set_osdmap_full_try()  # a full pool fails it now, not at the timeout
            rbd.RBD().migration_execute(self.ioctx, self.image, on_progress=self._progress)
            self.done = self.size
        except Exception as exc:  # reported through progress(), which the flow polls
            self.errno = getattr(exc, "errno", None)
            self.error = (f"rbd migration execute of {self.image} failed: "
                          f"{_failure(exc, self.timeout)}")
            LOG.error("%s", self.error)
        finally:
            self.ioctx.close()


class _Unreadable(DriverError):
    """A migration is there, but librbd cannot read its state."""


class LiveMigrations:
    """The live migrations of one RBD backend's images (the source side)."""

    def __init__(self, driver) -> None:
        self.driver = driver
        self._runs: dict[str, _Execute] = {}
        self._lock = threading.Lock()
        # The last state read of each migration: which images take part in it.
        self._seen: dict[str, dict] = {}

    # -- where things stand ------------------------------------------------
    @staticmethod
    def parse_target(target: str) -> tuple[str, str]:
        fsid, sep, pool = (target or "").partition(":")
        if not sep or not fsid or not pool:
            raise DriverError(f"{target!r} is not an RBD location (fsid:pool)")
        return fsid, pool

    def can_move(self, volume: dict, target: str) -> bool:
        try:
            fsid, pool = self.parse_target(target)
        except DriverError:
            return False
        return fsid == self.driver.client.fsid() and pool != self.driver.pool

    def _exists(self, pool: str, name: str) -> bool:
        _, rbd = bindings()
        ioctx = self.driver.client.ioctx(pool)
        try:
            return name in rbd.RBD().list(ioctx)
        finally:
            ioctx.close()

    def _status(self, name: str) -> dict | None:
        """The migration of image `name` of our pool, or None when none is under way.

        Raises _Unreadable when there is one whose state librbd cannot read
        (an abort that failed half way reads as a read-only image).
        """
        _, rbd = bindings()
        ioctx = self.driver.client.ioctx(self.driver.pool)
        try:
            status = rbd.RBD().migration_status(ioctx, name)
        except (rbd.InvalidArgument, rbd.ImageNotFound):
            return None
        except rbd.ReadOnlyImage as exc:
            raise _Unreadable(f"cannot read the migration state of {name}: {exc}") from None
        except rbd.Error as exc:
            raise DriverError(f"cannot read the migration state of {name}: "
                              f"{explain(exc, self.driver.client.timeout)}") from None
        finally:
            ioctx.close()
        self._seen[name] = status
        return status

    def where(self, volume: dict, target: str | None) -> str:
        """The location holding the volume for good: ours until a commit, then the target's."""
        name = self.driver.image_name(volume)
        run = self._runs.get(name)
        if run is not None and run.is_alive():
            # Executing here, so not committed; not asked of the cluster, whose
            # librbd calls can wait for ever beside an execute that does.
            stuck = self._stuck(run)
            if stuck:
                raise DriverError(stuck)
            return self.driver.location()
        if self._status(name) is not None or self._exists(self.driver.pool, name):
            return self.driver.location()
        if target and self._exists(self.parse_target(target)[1], name):
            return target
        raise DriverError(f"image {name} is neither in pool {self.driver.pool}"
                          + (f" nor at {target}" if target else ""))

    # -- the steps ---------------------------------------------------------
    def start(self, volume: dict, target: str) -> None:
        """Prepare the migration if none is under way, and run execute if it is not done."""
        _, rbd = bindings()
        _, dest_pool = self.parse_target(target)
        name = self.driver.image_name(volume)
        run = self._runs.get(name)
        if run is not None and (run.is_alive() or run.error is None):
            # Executing here, or executed here: nothing to ask the cluster (reading
            # the state opens the image, which blocks while execute runs, and a
            # second execute of an executed migration is refused by librbd).
            return
        status = self._status(name)
        if status is None:
            if not self._exists(self.driver.pool, name):
                if self._exists(dest_pool, name):
                    return  # committed already (a resumed flow)
                raise DriverError(f"image {self.driver.pool}/{name} does not exist")
            src = self.driver.client.ioctx(self.driver.pool)
            dst = self.driver.client.ioctx(dest_pool)
            try:
                rbd.RBD().migration_prepare(src, name, dst, name)
            except rbd.Error as exc:
                raise DriverError(f"rbd migration prepare of {name} to pool {dest_pool} "
                                  f"failed: {exc}") from None
            finally:
                src.close()
                dst.close()
            LOG.info("rbd migration of %s from pool %s to pool %s prepared", name,
                     self.driver.pool, dest_pool)
            status = self._status(name)
        state = status["state"] if status else None
        if state in (rbd.RBD_IMAGE_MIGRATION_STATE_PREPARED,
                     rbd.RBD_IMAGE_MIGRATION_STATE_EXECUTING):
            self._execute(name, dest_pool, volume["size"])
        elif state not in (None, rbd.RBD_IMAGE_MIGRATION_STATE_EXECUTED):
            raise DriverError(f"the rbd migration of {name} is in state "
                              f"{status.get('state_description') or state}; it cannot go on")

    def _execute(self, name: str, dest_pool: str, size: int) -> None:
        with self._lock:
            run = self._runs.get(name)
            if run is not None and run.is_alive():
                return
            run = _Execute(self.driver.client.ioctx(dest_pool), name, size,
                           self.driver.client.timeout)
            self._runs[name] = run
        run.start()

    def progress(self, volume: dict) -> tuple[int, int] | None:
        """(bytes copied, size) while execute runs; None once it has ended."""
        _, rbd = bindings()
        name = self.driver.image_name(volume)
        run = self._runs.get(name)
        if run is not None and run.error:
            raise DriverError(self._why(run))
        if run is not None:
            # Asked here, not of the cluster: reading the migration state opens
            # the image, and a commit running beside it would find it busy.
            if not run.is_alive():
                return None
            stuck = self._stuck(run)
            if stuck:
                raise DriverError(stuck)
            return run.done, volume["size"]
        status = self._status(name)
        if status is None or status["state"] != rbd.RBD_IMAGE_MIGRATION_STATE_EXECUTING:
            return None
        return 0, volume["size"]  # another process executes it (or its lock is expiring)

    def _why(self, run: _Execute) -> str:
        """An execute's error, with what the cluster says of its destination pool (librbd
        says "permission denied" when that pool was deleted)."""
        if run.errno in (errno.EDQUOT, errno.ENOSPC):
            full = self.driver.pool_full(run.pool)
            return f"{run.error}: {full}" if full else run.error
        deleted = (run.errno in (errno.EPERM, errno.ENOENT)
                   and self.driver.client.pool_deleted(run.pool))
        if deleted:  # not a question of rbd_user's rights, as explain() would guess
            return (f"rbd migration execute of {run.image} failed: its destination "
                    f"pool {run.pool} was deleted ({os.strerror(run.errno)})")
        return run.error

    def _stuck(self, run: _Execute) -> str | None:
        """Why a running execute is lost, or None while it moves or may (the cluster answers)."""
        timeout = self.driver.client.timeout
        now = time.monotonic()
        still = now - max(run.moved_at, run.answered_at)
        if timeout <= 0 or still < STALL_TIMEOUTS * timeout:
            return None  # moving, or the cluster answered not long ago
        client = self.driver.client
        problem = client.probe(run.pool) or client.probe(self.driver.pool)
        if problem is None:
            run.answered_at = time.monotonic()
            return None
        return (f"rbd migration execute of {run.image} has not moved for "
                f"{now - run.moved_at:.0f} s and the cluster does not answer: {problem}")

    def _wait_for(self, run: _Execute) -> None:
        """Until execute has ended; DriverError if it is lost (see _stuck)."""
        while run.is_alive():
            run.join(max(self.driver.client.timeout, 1))
            stuck = run.is_alive() and self._stuck(run)
            if stuck:
                raise DriverError(f"{stuck}; it still runs in this process, so the move "
                                  f"cannot be aborted now")

    def commit(self, volume: dict, target: str) -> None:
        _, rbd = bindings()
        _, dest_pool = self.parse_target(target)
        name = self.driver.image_name(volume)
        status = self._status(name)
        if status is None:
            if self._exists(dest_pool, name):
                return  # committed before a restart
            raise DriverError(f"image {name} is in no migration and not in pool {dest_pool}")
        if status["state"] != rbd.RBD_IMAGE_MIGRATION_STATE_EXECUTED:
            raise DriverError(f"the rbd migration of {name} cannot be committed in state "
                              f"{status.get('state_description') or status['state']}")
        dst = self.driver.client.ioctx(dest_pool)
        try:
            _while_busy(lambda: rbd.RBD().migration_commit(dst, name),
                        f"rbd migration commit of {name}", self.driver.client.timeout)
        finally:
            dst.close()
        self._runs.pop(name, None)
        LOG.info("rbd migration of %s to pool %s committed", name, dest_pool)

    def abort(self, volume: dict) -> bool:
        """Undo a migration not committed yet; False if it was (the data has moved)."""
        name = self.driver.image_name(volume)
        run = self._runs.get(name)
        if run is not None:
            self._wait_for(run)  # execute cannot be interrupted
        if not self._under_way(name):
            self._runs.pop(name, None)
            return self._exists(self.driver.pool, name) or self._put_back(name)
        self._abort(name)
        LOG.info("rbd migration of %s aborted: the image is back in pool %s", name,
                 self.driver.pool)
        return True

    def _put_back(self, name: str) -> bool:
        """Restore the source of a migration whose destination is gone (see
        drivers/rbd_trash.py); False when there is none."""
        image_id = rbd_trash.orphaned_source(self.driver.client, self.driver.pool, name)
        if image_id is None:
            return False
        rbd_trash.restore_source(self.driver.client, self.driver.pool, name, image_id)
        LOG.warning("The destination of the rbd migration of %s is gone (its pool or image "
                    "was deleted): the source image %s is back in pool %s as it was when "
                    "the migration was prepared", name, image_id, self.driver.pool)
        self._runs.pop(name, None)
        self._seen.pop(name, None)
        return True

    def abort_image(self, name: str) -> bool:
        """Abort the uncommitted migration that image `name` of our pool takes part in,
        as its source or its destination; False when it takes part in none.

        For a delete: a migration's source is in no pool's listing and its
        destination cannot be removed, so neither would go otherwise. After
        it the image is back in the source's pool only.
        """
        run = self._runs.get(name)
        if run is not None and run.is_alive():
            # One left running by a failed flow: it ends soon after the cluster is back.
            run.join(STALL_TIMEOUTS * max(self.driver.client.timeout, 1))
            if run.is_alive():
                raise DriverError(f"the rbd migration of {name} is executing in this process")
        if not self._under_way(name):
            return self._put_back(name)
        self._abort(name)
        LOG.warning("rbd migration of %s (found from pool %s) aborted: the image is back "
                    "in its source pool", name, self.driver.pool)
        return True

    def _under_way(self, name: str) -> bool:
        try:
            return self._status(name) is not None
        except _Unreadable:
            return True  # an abort that failed half way: the next one finishes it

    def _abort(self, name: str) -> None:
        """``migration_abort``; while the image is busy with a lock this process left
        in an outage (execute's), that lock is broken and the abort tried again."""
        _, rbd = bindings()
        images = self._images(name)

        def abort() -> None:
            try:
                rbd.RBD().migration_abort(ioctx, name)
            except rbd.ReadOnlyImage as exc:  # a lock of ours on the other image
                raise rbd.ImageBusy(str(exc)) from None
            except rbd.ImageNotFound:
                if not self._put_back(name):  # the destination is gone
                    raise

        def unlock() -> int:
            return sum(self.driver.client.break_stale_locks(pool, image_id=image_id)
                       for pool, image_id in images)

        ioctx = self.driver.client.ioctx(self.driver.pool)
        try:
            _while_busy(abort, f"rbd migration abort of {name}", self.driver.client.timeout,
                        unlock=unlock)
        finally:
            ioctx.close()
        self._runs.pop(name, None)
        self._seen.pop(name, None)

    def _images(self, name: str) -> list[tuple[str, str]]:
        """(pool, image id) of the migration's source and destination, as last read."""
        rados, rbd = bindings()
        status = self._seen.get(name)
        if status is None:
            return []
        client = self.driver.client
        cluster = client.cluster()
        found = []
        try:  # the binding reports the source's pool id right, the destination's not
            found.append((cluster.pool_reverse_lookup(status["source_pool_id"]),
                          status["source_image_id"]))
        except rados.Error:
            pass
        for pool in cluster.list_pools():
            try:
                ioctx = client.ioctx(pool)
            except DriverError:
                continue
            try:
                with rbd.Image(ioctx, image_id=status["dest_image_id"], read_only=True):
                    found.append((pool, status["dest_image_id"]))
                    break
            except rbd.Error:
                continue
            finally:
                ioctx.close()
        return found
