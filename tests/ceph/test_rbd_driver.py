"""The rbd driver against a real cluster: local -> RBD -> RBD (Ceph's live migration) -> local,
and the driver's own contract (create, delete, identity, stats, a missing pool)."""

import json

import ceph_cluster  # tools/, on sys.path through conftest.py
import pytest

from vmtest import MiB, host, sha256_of, write_volume, volume_sha256
from volmigrate.drivers.exceptions import DriverError
from volmigrate.engine.exceptions import ConfigError

SIZE = 64 * MiB
EXTENTS = [(4 * MiB, 8 * MiB), (40 * MiB + 4096, 3 * MiB)]


def test_local_to_rbd_to_rbd_to_local(make_service, rbd_backends):
    svc = make_service(backends={"a": {}, **rbd_backends("r1", "r2")})
    volume = svc.create_volume(SIZE, host("a"))
    before = write_volume(svc, volume, EXTENTS)

    to_rbd = svc.wait(svc.migrate_volume(volume["id"], host("r1")).migration_id, 120)
    assert to_rbd["state"] == "success", to_rbd["error"]
    assert to_rbd["case"] == "host-copy-file-io"
    assert volume_sha256(svc, svc.get_volume(volume["id"])) == before

    moved = svc.wait(svc.migrate_volume(volume["id"], host("r2")).migration_id, 120)
    assert moved["state"] == "success", moved["error"]
    assert moved["case"] == "driver-assisted"
    after = svc.get_volume(volume["id"])
    assert after["host"] == f"{host('r2')}#r2"
    assert volume_sha256(svc, after) == before

    back = svc.wait(svc.migrate_volume(volume["id"], host("a")).migration_id, 120)
    assert back["state"] == "success", back["error"]
    final = svc.get_volume(volume["id"])
    assert sha256_of(final["provider_location"]) == before


# -- the driver's own contract -------------------------------------------------
def _ref(volume_id: str, size: int) -> dict:
    return {"id": volume_id, "name_id": None, "size": size, "host": f"{host('r1')}#r1",
            "provider_location": None}


def test_driver_volumes_and_identity(make_service, rbd_backends, ceph):
    backends = rbd_backends("r1")
    pool = backends["r1"]["rbd_pool"]
    driver = make_service(backends=backends).drivers["r1"]
    volume = _ref("11111111-2222-3333-4444-555555555555", 16 * MiB)
    image = f"volume-{volume['id']}"

    made = driver.create_volume(volume)
    assert made == {"provider_location": f"rbd://{ceph.fsid}/{pool}/{image}"}
    with pytest.raises(DriverError, match=f"image {pool}/{image} already exists"):
        driver.create_volume(volume)
    assert ceph.rbd("ls", "--pool", pool).split() == [image]
    info = json.loads(ceph.rbd("info", "--format", "json", f"{pool}/{image}"))
    assert info["size"] == 16 * MiB and info["order"] == 22

    identity = driver.volume_identity(volume)
    assert identity == {"image_id": info["id"], "size": 16 * MiB}
    assert driver.volume_identity(volume) == identity  # stable while the image lives
    connection = driver.connect_volume(volume, writable=False)
    assert driver.connection_valid(volume, connection)

    driver.delete_volume(volume)
    driver.delete_volume(volume)  # already gone: no error
    assert ceph.rbd("ls", "--pool", pool).split() == []
    assert not driver.connection_valid(volume, connection)
    with pytest.raises(DriverError, match="does not exist"):
        driver.volume_identity(volume)

    driver.create_volume(volume)  # the same name again: another image
    again = driver.volume_identity(volume)
    assert again["size"] == 16 * MiB and again["image_id"] != identity["image_id"]
    assert not driver.connection_valid(volume, connection)
    driver.delete_volume(volume)
    assert ceph.rbd("ls", "--pool", pool).split() == []


def test_stats_of_a_backend_as_soon_as_it_is_configured(make_service, rbd_backends, ceph):
    # The pool exists (the service's start opened it): its stats must say so at
    # once, not only after Ceph's manager has put it in `ceph df`.
    backends = rbd_backends("r1")
    pool = backends["r1"]["rbd_pool"]
    driver = make_service(backends=backends).drivers["r1"]
    stats = driver.get_volume_stats()
    assert stats["volume_backend_name"] == "r1"
    assert stats["location_info"] == f"{ceph.fsid}:{pool}"
    assert stats["migration_progress_report"] is True
    (pool_stats,) = stats["pools"]
    assert pool_stats["pool_name"] == "r1"
    assert pool_stats["total_capacity_gb"] > 0 and pool_stats["free_capacity_gb"] > 0
    assert pool_stats["free_capacity_gb"] <= pool_stats["total_capacity_gb"]


def test_missing_pool_is_a_clear_error_at_start(make_service, rbd_backends):
    backends = rbd_backends("r1")
    backends["r1"]["rbd_pool"] = "no-such-pool"
    with pytest.raises(ConfigError) as raised:
        make_service(backends=backends, start=True)
    message = str(raised.value)
    assert "\n" not in message
    assert "backend r1" in message and "pool no-such-pool does not exist" in message, message


def test_a_source_whose_destination_is_gone_is_put_back_even_half_way(
        make_service, rbd_backends, ceph):
    """The restore of drivers/rbd_trash.py, its first step already made (a process
    killed after it): the abort finishes it; the data is the source's at the prepare."""
    backends = rbd_backends("r1", "r2")
    pool, dest = backends["r1"]["rbd_pool"], backends["r2"]["rbd_pool"]
    svc = make_service(backends=backends)
    driver = svc.drivers["r1"]
    volume = svc.create_volume(16 * MiB, host("r1"))
    before = write_volume(svc, volume, [(0, 16 * MiB)])
    image = f"volume-{volume['id']}"
    image_id = json.loads(ceph.rbd("info", "--format", "json", f"{pool}/{image}"))["id"]
    ceph.rbd("migration", "prepare", f"{pool}/{image}", f"{dest}/{image}")
    ceph.delete_pool(dest)
    with pytest.raises(ceph_cluster.CephClusterError, match="No such file or directory"):
        ceph.rbd("migration", "abort", f"{pool}/{image}")  # Ceph's own cannot
    ioctx = driver.client.ioctx(pool)
    try:
        ioctx.execute(f"rbd_header.{image_id}", "rbd", "migration_remove", b"")
    finally:
        ioctx.close()

    assert driver.abort_move(volume) is True
    assert ceph.rbd("ls", "--pool", pool).split() == [image]
    assert json.loads(ceph.rbd("trash", "ls", "--all", "--format", "json", pool)) == []
    assert json.loads(ceph.rbd("info", "--format", "json", f"{pool}/{image}"))["id"] == image_id
    assert volume_sha256(svc, svc.get_volume(volume["id"])) == before
    assert driver.abort_move(volume) is True  # nothing left to do: it is in its pool
