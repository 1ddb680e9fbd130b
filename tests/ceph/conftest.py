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
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"
sys.path.insert(0, str(TOOLS))

import ceph_cluster  # noqa: E402

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
