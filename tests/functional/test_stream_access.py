"""A backend that gives only a file-like object: the local driver with
``local_access = stream``. Every migration to, from or between such backends is
the file-I/O copy (flows/datamover/fileio.py): the bytes arrive intact, the
holes of the source stay holes, and nothing is left on the source side.
"""

import os

import pytest

from volmigrate.flows.datamover import data_extents

from vmtest import MiB, host, notifications, sha256_of, volume_files, volume_sha256, \
    write_volume

STREAM = {"local_access": "stream"}
SIZE = 64 * MiB + 4096 + 512  # not a whole number of copy blocks
# Random data with holes at the start, in the middle and at the end; the second
# extent starts and ends inside a page.
HOLEY = [(3 * MiB, 20 * MiB), (40 * MiB + 123, 10 * MiB)]
DATA_BYTES = 30 * MiB


def allocated(path: str) -> int:
    """Bytes of the file's data regions (SEEK_DATA/SEEK_HOLE).

    Not st_blocks: that also counts the file system's own extent-tree blocks,
    so a copy whose data regions are exactly the source's can show 4 KiB more
    when ext4 laid its extents out in more pieces (seen 1 run in 12).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        return sum(length for _, length in data_extents(fd, 0, os.fstat(fd).st_size))
    finally:
        os.close(fd)


def _check_ended(svc, tmp_path, migration, volume_id, dest):
    """The migration succeeded by the file-I/O copy; the volume is on `dest` only."""
    assert migration["state"] == "success", migration["error"]
    assert migration["case"] == "host-copy-file-io"
    after = svc.get_volume(volume_id)
    assert after["host"] == f"{host(dest)}#{dest}"
    assert after["status"] == "available" and after["migration_status"] == "success"
    assert after["provider_location"].startswith(str(tmp_path / "state" / "volumes" / dest))
    assert os.path.getsize(after["provider_location"]) == SIZE
    assert [v["id"] for v in svc.list_volumes(include_hidden=True)] == [volume_id]
    events = [n["event_type"] for n in notifications()
              if n["payload"]["migration_id"] == migration["id"]]
    assert events[0] == "volume.migration.start" and events[-1] == "volume.migration.end"
    assert events.count("volume.migration.progress") >= 1
    assert "volume.migration.error" not in events
    return after


def test_local_to_stream_backend_and_back(make_service, tmp_path):
    svc = make_service(backends={"a": {}, "s": STREAM},
                       volume_copy_bps_limit=str(64 * MiB))  # slow enough to see progress
    volume = svc.create_volume(SIZE, host("a"))
    before = write_volume(svc, volume, HOLEY)
    source_allocated = allocated(volume["provider_location"])
    assert DATA_BYTES <= source_allocated < SIZE

    migration = svc.wait(svc.migrate_volume(volume["id"], host("s")).migration_id, 120)
    moved = _check_ended(svc, tmp_path, migration, volume["id"], "s")
    assert volume_sha256(svc, moved) == before
    assert sha256_of(moved["provider_location"]) == before
    # The holes stayed holes: no more allocated than the source.
    assert DATA_BYTES <= allocated(moved["provider_location"]) <= source_allocated
    assert volume_files(tmp_path, "a") == []
    assert not os.path.exists(volume["provider_location"])

    # Back: from the stream backend to a backend that gives a path, file I/O again.
    back = svc.wait(svc.migrate_volume(volume["id"], host("a")).migration_id, 120)
    returned = _check_ended(svc, tmp_path, back, volume["id"], "a")
    assert volume_sha256(svc, returned) == before
    assert DATA_BYTES <= allocated(returned["provider_location"]) <= source_allocated
    assert volume_files(tmp_path, "s") == []
    assert not os.path.exists(moved["provider_location"])


@pytest.mark.parametrize("extents", [None, HOLEY], ids=["dense", "holey"])
def test_stream_to_stream(make_service, tmp_path, extents):
    svc = make_service(backends={"s1": STREAM, "s2": STREAM})
    volume = svc.create_volume(SIZE, host("s1"))
    before = write_volume(svc, volume, extents)  # through the driver's file-like object
    source_allocated = allocated(volume["provider_location"])

    migration = svc.wait(svc.migrate_volume(volume["id"], host("s2")).migration_id, 120)
    moved = _check_ended(svc, tmp_path, migration, volume["id"], "s2")
    assert volume_sha256(svc, moved) == before
    assert sha256_of(moved["provider_location"]) == before
    assert allocated(moved["provider_location"]) <= source_allocated
    if extents is None:
        assert allocated(moved["provider_location"]) >= SIZE - 4096  # all of it written
    else:
        assert allocated(moved["provider_location"]) >= DATA_BYTES
    assert volume_files(tmp_path, "s1") == []
