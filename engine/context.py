"""What the parts of the migration service share: configuration, database, drivers, runtime.

The service is split by what changes together (volume operations, migration
requests, the flow runner, recovery). Each part is given this one object
instead of reaching into the others, so every part imports only what lies
below it and none imports another.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable

import tenacity
from oslo_config import cfg

from volmigrate.common.hosts import Host, parse_host
from volmigrate.db import api as db_api
from volmigrate.db import models
from volmigrate.db import session as db_session
from volmigrate.drivers.base import VolumeDriver
from volmigrate.engine import opts, ownership
from volmigrate.engine.exceptions import (BackendError, ConfigError, InvalidInput,
                                          MigrationNotFound, VolumeNotFound)
from volmigrate.flows import runtime

# How often a wait for a migration run by another process reads its row.
WAIT_POLL_SECONDS = 0.1
# Longest a wait for a flow of this process sleeps without running signal handlers.
WAKE_SECONDS = 0.5


class ServiceContext:
    """The database (opened on first use), the drivers and runtime once started.

    ``drivers`` is empty and ``runtime`` is None until the service starts: a
    read-only use (``volmigrate list``) opens the database alone.
    """

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf
        self.db: db_api.Database | None = None
        self.drivers: dict[str, VolumeDriver] = {}
        self.runtime: runtime.Runtime | None = None
        self.identity = ownership.identity()
        # Where a migration run by this process can be waited for (the flow
        # runner's futures); None when no flow runs here.
        self.future_of: Callable[[str], concurrent.futures.Future | None] = lambda _id: None

    def connect(self) -> db_api.Database:
        if self.db is None:
            opts.validate(self.conf)
            url = opts.database_url(self.conf)
            try:
                engine = db_session.create_engine(url)
                db_session.upgrade_schema(engine)
            except Exception as exc:
                raise ConfigError(f"cannot open the database {url}: {exc}") from exc
            self.db = db_api.Database(engine)
        return self.db

    def require_started(self) -> runtime.Runtime:
        if self.runtime is None:
            raise RuntimeError("MigrationService.start() has not been called")
        return self.runtime

    # -- hosts and drivers ---------------------------------------------------
    def resolve_host(self, text: str) -> tuple[Host, VolumeDriver]:
        """Parse and check a host against this node; fill in the default pool."""
        try:
            host = parse_host(text)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        if host.node != self.conf.host:
            raise InvalidInput(f"host {text} is unknown: this service serves node "
                               f"{self.conf.host}")
        driver = self.drivers.get(host.backend)
        if driver is None:
            raise InvalidInput(f"host {text} is unknown: no enabled backend "
                               f"{host.backend!r} (enabled: {', '.join(self.drivers)})")
        pools = driver.pools()
        if host.pool is None:
            host = host.with_pool(driver.default_pool)
        elif host.pool not in pools:
            raise InvalidInput(f"host {text} is unknown: backend {host.backend} has no pool "
                               f"{host.pool!r} (pools: {', '.join(pools)})")
        return host, driver

    def driver_of(self, volume: dict) -> VolumeDriver:
        backend = parse_host(volume["host"]).backend
        try:
            return self.drivers[backend]
        except KeyError:
            raise BackendError(f"volume {volume['id']} is on backend {backend}, which this "
                               f"service does not have enabled") from None

    # -- rows ------------------------------------------------------------------
    def get_volume(self, volume_id: str, include_hidden: bool = False) -> dict:
        volume = self.connect().get_volume(str(volume_id))
        if volume is None or (not include_hidden
                              and volume["project_id"] == self.conf.internal_project_id):
            raise VolumeNotFound(volume_id)
        return volume

    def get_migration(self, migration_id: str) -> dict:
        migration = self.connect().get_migration(migration_id)
        if migration is None:
            raise MigrationNotFound(migration_id)
        return migration

    def migration_for(self, ref: str) -> dict:
        """A migration by its id, or the latest migration of a volume."""
        db = self.connect()
        migration = db.get_migration(ref) or db.latest_migration(ref)
        if migration is None:
            raise MigrationNotFound(ref)
        return migration

    def running_migration(self, volume: dict) -> dict | None:
        if volume["migration_status"] not in models.MIGRATION_RUNNING_STATES:
            return None
        migration = self.connect().latest_migration(volume["id"])
        if migration and migration["state"] in models.STATES_UNFINISHED:
            return migration
        return None

    def orphaned_migration(self, volume: dict) -> str | None:
        """Why the volume is busy when the process running its migration is gone.

        Such a migration (its command killed, its host crashed) holds the volume
        `migrating` (and `maintenance`) until `volmigrate recover` resumes or
        rolls it back: a refusal must say so rather than "try later".
        """
        busy = (volume["migration_status"] in models.MIGRATION_RUNNING_STATES
                or volume["status"] in (models.STATUS_MAINTENANCE, models.STATUS_RETYPING))
        if not busy:
            return None
        migration = self.connect().latest_migration(volume["id"])
        if (migration is None or migration["state"] not in models.STATES_UNFINISHED
                or migration["owner"] == self.identity):
            return None
        if ownership.owner_alive(migration["owner"], migration["heartbeat_at"],
                                 self.stale_after()):
            return None
        return (f"its migration {migration['id']} (migration_status "
                f"{volume['migration_status']}, status {volume['status']}) was left "
                f"unfinished by {ownership.describe(migration['owner'])}, which is gone: "
                f"run `volmigrate recover` to resume or roll it back")

    def stale_after(self) -> float:
        """How long without a heartbeat before an owner counts as gone (recovery's rule)."""
        return 6 * self.conf.migration_heartbeat_interval

    def wait(self, ref: str, timeout: float | None = None) -> dict:
        """Wait for a migration (by id, or a volume's latest) to end; return its row.

        A migration this process runs is waited for on its flow; one run by
        another process, through the database.
        """
        migration = self.migration_for(ref)
        future = self.future_of(migration["id"])
        if future is not None:
            _wait_awake(future, timeout, f"migration {migration['id']} still running")
            return self.get_migration(migration["id"])
        stop = tenacity.stop_never if timeout is None else tenacity.stop_after_delay(timeout)
        try:
            return tenacity.Retrying(
                retry=tenacity.retry_if_result(
                    lambda row: row["state"] in models.STATES_UNFINISHED),
                wait=tenacity.wait_fixed(WAIT_POLL_SECONDS),
                stop=stop)(self.get_migration, migration["id"])
        except tenacity.RetryError:
            raise TimeoutError(f"migration {migration['id']} still running") from None


def _wait_awake(future: concurrent.futures.Future, timeout: float | None,
                still_running: str) -> None:
    """Wait for a flow's future, waking every WAKE_SECONDS.

    A wait without a timeout sleeps in one lock acquire; a signal the kernel
    hands to another thread then never wakes it, and the command's handler
    (SIGINT, SIGTERM: roll back, exit) would not run until the migration
    ended: once, a SIGINT was lost that way for the 300 s a test waited.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = WAKE_SECONDS if deadline is None else min(WAKE_SECONDS,
                                                         deadline - time.monotonic())
        done, _ = concurrent.futures.wait([future], timeout=max(left, 0))
        if done:
            future.result()  # a flow that raised raises here
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(still_running)
