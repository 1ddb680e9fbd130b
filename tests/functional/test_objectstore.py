"""The object-store (RBD-style) backend: a volume reachable only as a file-like object."""

import hashlib
import io
import os

import pytest
from oslo_config import cfg

from vmtest import MiB, host, notifications, sha256_of
from volmigrate.drivers.exceptions import DriverError
from volmigrate.drivers.objectstore import ObjectStoreDriver

OBJ = 1 * MiB


def make_driver(tmp_path, object_size=OBJ) -> ObjectStoreDriver:
    conf = cfg.ConfigOpts()
    conf.register_opts(ObjectStoreDriver.options, group="obj")
    conf([])
    conf.set_override("objectstore_object_size", object_size, group="obj")
    driver = ObjectStoreDriver(conf.obj, "obj", str(tmp_path))
    driver.do_setup()
    return driver


def objects_of(driver, volume) -> list[str]:
    return sorted(n for n in os.listdir(driver.volume_dir(volume)) if n.startswith("data."))


def test_handle_reads_zeros_writes_across_objects_and_stays_thin(tmp_path):
    driver = make_driver(tmp_path)
    volume = {"id": "v1", "name_id": None, "size": 3 * OBJ + 100, "host": "n@obj#obj",
              "provider_location": None}
    driver.create_volume(volume)
    with driver.open_volume(volume, writable=True) as f:
        assert f.read(10) == bytes(10)
        f.seek(OBJ - 5)
        payload = os.urandom(10)
        f.write(payload)                       # straddles objects 0 and 1
        f.seek(2 * OBJ)
        f.write(bytes(OBJ))                    # zeros over an absent object: not stored
        f.seek(3 * OBJ + 90)
        f.write(b"0123456789")                 # the last, partial object
        with pytest.raises(OSError, match="past the end"):
            f.write(b"x")
    assert objects_of(driver, volume) == ["data.0000000000000000", "data.0000000000000001",
                                          "data.0000000000000003"]
    with driver.open_volume(volume) as f:
        data = f.read()
    assert len(data) == volume["size"]
    assert data[OBJ - 5:OBJ + 5] == payload
    assert data[-10:] == b"0123456789"
    assert data.count(0) == len(data) - 20 + payload.count(0) + b"0123456789".count(0)
    with driver.open_volume(volume) as f, pytest.raises(io.UnsupportedOperation):
        f.write(b"x")


def test_create_twice_and_delete_twice(tmp_path):
    driver = make_driver(tmp_path)
    volume = {"id": "v2", "name_id": None, "size": MiB, "host": "n@obj#obj",
              "provider_location": None}
    driver.create_volume(volume)
    with pytest.raises(DriverError, match="already exists"):
        driver.create_volume(volume)
    driver.delete_volume(volume)
    driver.delete_volume(volume)
    with pytest.raises(DriverError, match="does not exist"):
        driver.connect_volume(volume, False)


def test_object_size_must_be_a_power_of_two(tmp_path):
    with pytest.raises(DriverError, match="power of two"):
        make_driver(tmp_path, object_size=3 * MiB)


def _object_sha256(driver, volume) -> str:
    digest = hashlib.sha256()
    with driver.open_volume(volume) as f:
        for block in iter(lambda: f.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


SIZE = 64 * MiB + 4096 + 512  # not a whole number of objects or copy blocks


def _check_ended(svc, migration, volume_id, dest):
    assert migration["state"] == "success", migration["error"]
    assert migration["case"] == "host-copy-file-io"
    after = svc.get_volume(volume_id)
    assert after["host"] == f"{host(dest)}#{dest}"
    assert after["status"] == "available" and after["migration_status"] == "success"
    assert [v["id"] for v in svc.list_volumes(include_hidden=True)] == [volume_id]
    events = [n["event_type"] for n in notifications()]
    assert events[0] == "volume.migration.start" and events[-1] == "volume.migration.end"
    assert events.count("volume.migration.progress") >= 1
    assert "volume.migration.error" not in events
    return after


def test_local_to_objectstore_and_back(make_service, tmp_path):
    svc = make_service(backends={"a": {}, "obj": {"volume_driver": "objectstore",
                                                  "objectstore_object_size": str(OBJ)}},
                       volume_copy_bps_limit=str(64 * MiB))  # slow enough to see progress
    volume = svc.create_volume(SIZE, host("a"))
    with open(volume["provider_location"], "r+b") as f:  # holes at start, middle and end
        f.seek(3 * OBJ)
        f.write(os.urandom(20 * OBJ))
        f.seek(40 * OBJ + 123)
        f.write(os.urandom(10 * OBJ))
    before = sha256_of(volume["provider_location"])

    migration = svc.wait(svc.migrate_volume(volume["id"], host("obj")).migration_id, 120)
    moved = _check_ended(svc, migration, volume["id"], "obj")
    assert _object_sha256(svc.drivers["obj"], moved) == before
    objects = objects_of(svc.drivers["obj"], moved)
    assert 30 <= len(objects) <= 32  # the holes stayed holes
    assert not os.path.exists(volume["provider_location"])

    notifications_before = len(notifications())
    back = svc.wait(svc.migrate_volume(volume["id"], host("a")).migration_id, 120)
    assert len(notifications()) > notifications_before
    returned = svc.get_volume(volume["id"])
    assert back["state"] == "success", back["error"]
    assert sha256_of(returned["provider_location"]) == before
    assert os.path.getsize(returned["provider_location"]) == SIZE
    assert not os.path.exists(svc.drivers["obj"].volume_dir(moved))


def test_objectstore_to_objectstore_dense(make_service, tmp_path):
    svc = make_service(backends={"o1": {"volume_driver": "objectstore"},
                                 "o2": {"volume_driver": "objectstore"}})
    volume = svc.create_volume(SIZE, host("o1"))
    with svc.drivers["o1"].open_volume(volume, writable=True) as f:
        f.write(os.urandom(SIZE))
    before = _object_sha256(svc.drivers["o1"], volume)
    migration = svc.wait(svc.migrate_volume(volume["id"], host("o2")).migration_id, 120)
    assert migration["state"] == "success", migration["error"]
    moved = svc.get_volume(volume["id"])
    assert _object_sha256(svc.drivers["o2"], moved) == before
