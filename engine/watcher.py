"""The thread that keeps this process's migrations answerable from other processes.

An administrator may abort a migration from another shell (`volmigrate
abort`, an attach): that request is a column on the row, so someone in the
running process must read it. Recovery in other processes judges this process
alive by its heartbeat, so the same thread beats it.
"""

from __future__ import annotations

import threading
import time

from oslo_log import log as logging

from volmigrate.engine.context import ServiceContext

LOG = logging.getLogger(__name__)

# How often the service looks for aborts requested by other processes.
ABORT_POLL_SECONDS = 0.25


class AbortWatcher:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="abort-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        last_beat = 0.0
        while not self._stop.wait(ABORT_POLL_SECONDS):
            rt, db = self.ctx.runtime, self.ctx.db
            if rt is None or db is None:
                return
            if time.monotonic() - last_beat >= self.ctx.conf.migration_heartbeat_interval:
                last_beat = time.monotonic()
                try:
                    db.heartbeat(self.ctx.identity)
                except Exception:
                    LOG.exception("Heartbeat failed")
            for migration_id, tracker in list(rt.trackers.items()):
                if tracker.abort_event.is_set():
                    continue
                try:
                    row = db.get_migration(migration_id)
                except Exception:  # the next round will tell
                    LOG.exception("Checking migration %s for an abort failed", migration_id)
                    continue
                if row and row["abort_reason"]:
                    tracker.abort(row["abort_reason"])
