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
by default).
"""

from __future__ import annotations

import threading
import time

from oslo_log import log as logging

from volmigrate.drivers.exceptions import DriverError
from volmigrate.drivers.rbd_client import bindings

LOG = logging.getLogger(__name__)

# A commit finding the image busy is tried again, for about 20 s in all.
COMMIT_ATTEMPTS = 15


class _Execute(threading.Thread):
    """One ``migration_execute``, with its progress in bytes."""

    def __init__(self, ioctx, name: str, size: int) -> None:
        super().__init__(name=f"rbd-migration-{name}", daemon=True)
        self.ioctx, self.image, self.size = ioctx, name, size
        self.done = 0
        self.error: str | None = None

    def _progress(self, offset: int, total: int) -> int:
        # librbd counts objects, not bytes.
        self.done = self.size * offset // total if total else 0
        return 0

    def run(self) -> None:
        _, rbd = bindings()
        try:
            rbd.RBD().migration_execute(self.ioctx, self.image, on_progress=self._progress)
            self.done = self.size
        except Exception as exc:  # reported through progress(), which the flow polls
            self.error = f"rbd migration execute of {self.image} failed: {exc}"
            LOG.error("%s", self.error)
        finally:
            self.ioctx.close()


class LiveMigrations:
    """The live migrations of one RBD backend's images (the source side)."""

    def __init__(self, driver) -> None:
        self.driver = driver
        self._runs: dict[str, _Execute] = {}
        self._lock = threading.Lock()

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
        """The migration of image `name` of our pool, or None when none is under way."""
        _, rbd = bindings()
        ioctx = self.driver.client.ioctx(self.driver.pool)
        try:
            return rbd.RBD().migration_status(ioctx, name)
        except (rbd.InvalidArgument, rbd.ImageNotFound):
            return None
        except rbd.Error as exc:
            raise DriverError(f"cannot read the migration state of {name}: {exc}") from None
        finally:
            ioctx.close()

    def where(self, volume: dict, target: str | None) -> str:
        """The location holding the volume for good: ours until a commit, then the target's."""
        name = self.driver.image_name(volume)
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
            run = _Execute(self.driver.client.ioctx(dest_pool), name, size)
            self._runs[name] = run
        run.start()

    def progress(self, volume: dict) -> tuple[int, int] | None:
        """(bytes copied, size) while execute runs; None once it has ended."""
        _, rbd = bindings()
        name = self.driver.image_name(volume)
        run = self._runs.get(name)
        if run is not None and run.error:
            raise DriverError(run.error)
        if run is not None:
            # Asked here, not of the cluster: reading the migration state opens
            # the image, and a commit running beside it would find it busy.
            return (run.done, volume["size"]) if run.is_alive() else None
        status = self._status(name)
        if status is None or status["state"] != rbd.RBD_IMAGE_MIGRATION_STATE_EXECUTING:
            return None
        return 0, volume["size"]  # another process executes it (or its lock is expiring)

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
            for attempt in range(COMMIT_ATTEMPTS):
                try:
                    rbd.RBD().migration_commit(dst, name)
                    break
                except rbd.ImageBusy as exc:
                    # Another client has the source open for a moment (a `rbd
                    # status`, a progress query): try again shortly.
                    if attempt + 1 == COMMIT_ATTEMPTS:
                        raise DriverError(f"rbd migration commit of {name} failed: the "
                                          f"image stays in use by another client "
                                          f"({exc})") from None
                    time.sleep(min(2.0, 0.1 * 2 ** attempt))
        except rbd.Error as exc:
            raise DriverError(f"rbd migration commit of {name} failed: {exc}") from None
        finally:
            dst.close()
        self._runs.pop(name, None)
        LOG.info("rbd migration of %s to pool %s committed", name, dest_pool)

    def abort(self, volume: dict) -> bool:
        """Undo a migration not committed yet; False if it was (the data has moved)."""
        _, rbd = bindings()
        name = self.driver.image_name(volume)
        run = self._runs.get(name)
        if run is not None:
            run.join()  # execute cannot be interrupted
        if self._status(name) is None:
            self._runs.pop(name, None)
            return self._exists(self.driver.pool, name)
        src = self.driver.client.ioctx(self.driver.pool)
        try:
            rbd.RBD().migration_abort(src, name)
        except rbd.Error as exc:
            raise DriverError(f"rbd migration abort of {name} failed: {exc}") from None
        finally:
            src.close()
        self._runs.pop(name, None)
        LOG.info("rbd migration of %s aborted: the image is back in pool %s", name,
                 self.driver.pool)
        return True
