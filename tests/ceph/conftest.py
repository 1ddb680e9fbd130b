"""A real single-node Ceph cluster (tools/ceph_cluster.py) for the RBD tests.

One cluster serves the whole test run: every test in tests/ceph is put in the
xdist group "ceph", so one worker runs them all, one after the other, and
starts the cluster once. Each test gets pools of its own (`rbd_backends`).
The tests skip, saying why, only where Ceph's packages are not installed
(`apt-get install ceph-mon ceph-osd ceph-mgr ceph-common python3-rados
python3-rbd`); .ci/run installs them.
"""

from __future__ import annotations

import itertools
import json
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"
sys.path.insert(0, str(TOOLS))

import ceph_cluster  # noqa: E402

from vmtest import PATIENCE, wait_for  # noqa: E402
from volmigrate.drivers import rbd_client  # noqa: E402

_pool_numbers = itertools.count(1)


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.xdist_group("ceph"))


def skip_reason() -> str | None:
    missing = ceph_cluster.missing_packages()
    if missing:
        return f"Ceph is not installed here (apt-get install {' '.join(missing)})"
    if not rbd_client.available():
        return f"Ceph's Python bindings are not installed ({rbd_client.INSTALL_HINT})"
    return None


@pytest.fixture(scope="session")
def ceph(tmp_path_factory):
    """The running cluster (a ceph_cluster.CephCluster)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    cluster = ceph_cluster.CephCluster(tmp_path_factory.mktemp("ceph"))
    try:
        cluster.start()
    except ceph_cluster.CephClusterError as exc:
        cluster.destroy()
        pytest.fail(f"the test Ceph cluster did not start: {exc}")
    yield cluster
    cluster.destroy()


@pytest.fixture
def rbd_backends(ceph):
    """Backend sections for make_service: each name gets a new pool of its own.

    ``rbd_backends("r1", "r2")`` -> {"r1": {...}, "r2": {...}}; the pools are
    deleted after the test.
    """
    made: list[str] = []

    def factory(*names: str, **options) -> dict[str, dict]:
        backends = {}
        for name in names:
            pool = f"t{next(_pool_numbers)}-{name}"
            ceph.create_pool(pool)
            made.append(pool)
            backends[name] = {"volume_driver": "rbd", "rbd_pool": pool,
                              "rbd_ceph_conf": str(ceph.conf), **options}
        return backends

    yield factory
    for pool in made:
        try:
            ceph.delete_pool(pool)
        except ceph_cluster.CephClusterError:
            pass


# -- faults: the OSD down, a pool at its quota, images and migrations as Ceph sees them
class Images:
    """What the cluster itself says about images, through the `rbd` command."""

    def __init__(self, ceph) -> None:
        self.ceph = ceph

    def listed(self, pool: str) -> list[str]:
        """The images `rbd ls` lists in `pool` (a migration's source is in no listing)."""
        return sorted(json.loads(self.ceph.rbd("ls", "--format", "json", pool)))

    def trash(self, pool: str) -> list[str]:
        """The names of the images in `pool`'s trash, whatever put them there."""
        entries = json.loads(self.ceph.rbd("trash", "ls", "--all", "--format", "json", pool))
        return sorted(entry["name"] for entry in entries)

    def migration(self, pool: str, image: str) -> str | None:
        """The state of the live migration `pool/image` is the destination of, or None."""
        try:
            status = json.loads(self.ceph.rbd("status", "--format", "json", f"{pool}/{image}"))
        except ceph_cluster.CephClusterError:
            return None  # no such image
        return (status.get("migration") or {}).get("state")


@pytest.fixture
def rbd_images(ceph):
    return Images(ceph)


class OSD:
    """The cluster's one OSD, stopped by a test and always started again.

    SIGTERM: the memstore OSD saves its data at shutdown (osd_fast_shutdown =
    false), so the data is back with it; SIGKILL would lose it.
    """

    def __init__(self, ceph) -> None:
        self.ceph, self.stopped = ceph, False

    def stop(self) -> None:
        self.stopped = True
        self.ceph.stop_osd(signal.SIGTERM)

    def start(self) -> float:
        """Start it and wait until it serves again; the seconds that took."""
        started = time.monotonic()
        self.ceph.start_osd()
        self.stopped = False
        return time.monotonic() - started


@pytest.fixture
def osd(ceph):
    """OSD: stop() it during a test; it is started again at the end whatever happens,
    so that the session's cluster serves the next test."""
    handle = OSD(ceph)
    try:
        yield handle
    finally:
        if handle.stopped:
            handle.start()


class PoolQuotas:
    """`ceph osd pool set-quota` on the test's pools, cleared at the end."""

    def __init__(self, ceph) -> None:
        self.ceph, self.pools = ceph, set()

    def _flags(self, pool: str) -> list[str]:
        detail = json.loads(self.ceph.ceph("osd", "pool", "ls", "detail", "--format", "json"))
        found = [p for p in detail if p["pool_name"] == pool]
        return found[0].get("flags_names", "").split(",") if found else []

    def full(self, pool: str) -> bool:
        return "full_quota" in self._flags(pool)

    def set(self, pool: str, max_bytes: int) -> float:
        """Set the quota; when the pool already holds more, wait until the cluster
        marks it full (the manager reports usage every second); the seconds waited."""
        started = time.monotonic()
        self.pools.add(pool)
        self.ceph.ceph("osd", "pool", "set-quota", pool, "max_bytes", str(max_bytes))
        wait_for(lambda: self.full(pool), timeout=60)
        return time.monotonic() - started

    def clear(self, pool: str) -> float:
        """Remove the quota and wait until the pool takes writes again; the seconds."""
        started = time.monotonic()
        self.ceph.ceph("osd", "pool", "set-quota", pool, "max_bytes", "0")
        wait_for(lambda: not self.full(pool), timeout=60)
        self.pools.discard(pool)
        return time.monotonic() - started


@pytest.fixture
def pool_quota(ceph):
    quotas = PoolQuotas(ceph)
    yield quotas
    for pool in list(quotas.pools):
        try:
            quotas.clear(pool)
        except ceph_cluster.CephClusterError:
            pass  # deleted already


class ExecuteGate:
    """Holds every Ceph live migration's execute run in this process after it has
    copied its first object, until released (or the test ends).

    The gate waits in execute's progress callback, so the migration stays
    `executing`, part copied, until the test has acted (cancelled it, stopped
    the OSD) and releases it. Hold it for seconds, not minutes: the callback
    runs in one of librbd's threads, and once (held a minute) librbd lost the
    image's lock and execute failed with EROFS.
    """

    def __init__(self) -> None:
        self.held = threading.Event()
        self.released = threading.Event()

    def wait_held(self) -> None:
        assert self.held.wait(PATIENCE), "no live migration's execute was held"

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def execute_gate(monkeypatch):
    from volmigrate.drivers import rbd_migration

    gate = ExecuteGate()

    class HeldExecute(rbd_migration._Execute):
        def _progress(self, offset: int, total: int) -> int:
            answer = super()._progress(offset, total)
            if offset > 0 and not gate.released.is_set():
                gate.held.set()
                gate.released.wait(PATIENCE)
            return answer

    monkeypatch.setattr(rbd_migration, "_Execute", HeldExecute)
    yield gate
    gate.release()
