"""The live services migration tasks use, and the per-migration trackers.

The TaskFlow store is persisted, so it holds only ids and numbers; everything
that cannot be serialized (the database, drivers, the notifier, the running
copy) is registered here by the service that runs the flows. A process runs
one service at a time.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from volmigrate.common.hosts import parse_host
from volmigrate.db.api import Database
from volmigrate.drivers.base import VolumeDriver
from volmigrate.flows.exceptions import MigrationAborted


@dataclasses.dataclass
class Settings:
    """Option values the tasks need, validated by the engine."""

    progress_interval: float
    bps_limit: int
    block_size: int  # volume_dd_blocksize: the unit of every copy method, not only dd
    hidden_project: str
    checkpoint_bytes: int
    copy_method: str = "auto"
    verify: str = "none"


class Tracker:
    """What the copy and the monitor of one migration share, and its abort switch."""

    def __init__(self) -> None:
        self.abort_event = threading.Event()
        self.abort_reason: str | None = None
        self.copy_done = threading.Event()
        self.copy_succeeded = False
        self._position: Callable[[], int | None] | None = None
        # Cleanups that failed during a revert, for the error reason.
        self.cleanup_problems: list[str] = []
        self._lock = threading.Lock()
        # Set when the service stops for a restart: the abort event then means
        # "stop where you are, durably, and wait for the process to end".
        self.parking = False
        self.parked = threading.Event()

    def abort(self, reason: str) -> None:
        with self._lock:
            if self.abort_reason is None:
                self.abort_reason = reason
        self.abort_event.set()

    def check_abort(self) -> None:
        if self.abort_event.is_set():
            if self.parking:
                self.stay_parked()
            raise MigrationAborted(self.abort_reason or "migration aborted")

    def park(self) -> None:
        """Stop this migration's work for a restart (see MigrationService.stop_for_restart)."""
        self.parking = True
        self.abort_event.set()

    def stay_parked(self) -> None:
        """Block this flow's thread until the process ends.

        Raising would revert the flow (TaskFlow reverts on any error) and undo
        the copy. The process is about to exit; its flow stays persisted as
        running, and the next start resumes it from the durable checkpoint,
        as after a crash.
        """
        self.parked.set()
        threading.Event().wait()

    def copy_started(self, position: Callable[[], int | None]) -> None:
        self._position = position

    def copy_finished(self, succeeded: bool) -> None:
        self.copy_succeeded = succeeded
        self.copy_done.set()

    def position(self) -> int | None:
        return self._position() if self._position is not None else None


@dataclasses.dataclass
class Runtime:
    db: Database
    drivers: dict[str, VolumeDriver]
    notifier: Any  # oslo_messaging.Notifier
    settings: Settings
    trackers: dict[str, Tracker] = dataclasses.field(default_factory=dict)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    parking: bool = False

    def tracker(self, migration_id: str) -> Tracker:
        with self._lock:
            tracker = self.trackers.get(migration_id)
            if tracker is None:
                tracker = self.trackers[migration_id] = Tracker()
                if self.parking:
                    tracker.park()
            return tracker

    def park_all(self) -> list[tuple[str, Tracker]]:
        """Ask every migration of this process to stop for a restart; new ones too."""
        with self._lock:
            self.parking = True
            trackers = list(self.trackers.items())
        for _, tracker in trackers:
            tracker.park()
        return trackers

    def forget(self, migration_id: str) -> None:
        with self._lock:
            self.trackers.pop(migration_id, None)

    def driver_for_host(self, host: str) -> VolumeDriver:
        backend = parse_host(host).backend
        try:
            return self.drivers[backend]
        except KeyError:
            raise LookupError(f"backend {backend} is not enabled in this service") from None


_current: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _current
    if _current is not None:
        raise RuntimeError("a migration service is already running in this process")
    _current = runtime


def uninstall() -> None:
    global _current
    _current = None


def get() -> Runtime:
    if _current is None:
        raise RuntimeError("no migration service is running in this process")
    return _current
