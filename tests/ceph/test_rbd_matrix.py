"""The spec's migration matrix with RBD, on the real single-node Ceph cluster.

LVM (real lvm2, loop activation), local sparse files and the Storwize
simulator to RBD and back (host copies by file I/O through librbd), and RBD
to RBD in another pool of the same cluster (driver-assisted: Ceph's live
migration). Each case moves random data with holes and checks the bytes
(through each driver's handle, and the file or device where there is one),
the statuses, the notifications, that nothing is left behind (no hidden
destination, no source object) and that the destination is no more allocated
than the source: RBD allocates whole objects, so an RBD destination must hold
exactly the objects the source has data in, no more (a thin image stays thin).
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from vmtest import (HAS_LVM, NO_LVM_REASON, MiB, host, notifications, sha256_of,
                    volume_files, volume_sha256, write_volume)
from volmigrate.common.volumes import volume_ref
from volmigrate.drivers.base import object_id

OBJECT = 4 * MiB  # rbd_store_chunk_size's default: the unit RBD allocates
SIZE = 48 * MiB
# Random data, holes between and around: the second extent starts and ends
# inside a page and inside one object; the last one ends the volume.
DATA = [(0, 6 * MiB), (20 * MiB + 4096, 3 * MiB), (44 * MiB, 4 * MiB)]
DATA_BYTES = sum(length for _, length in DATA)
DATA_OBJECTS = sorted({n for offset, length in DATA
                       for n in range(offset // OBJECT, (offset + length - 1) // OBJECT + 1)})
THIN = len(DATA_OBJECTS) * OBJECT  # what an RBD image holding DATA allocates: 16 MiB
assert THIN < SIZE / 2


# -- what the cluster and the other backends hold ---------------------------
def rbd_images(ceph, pool: str) -> list[str]:
    return sorted(json.loads(ceph.rbd("ls", "--format", "json", "--pool", pool)))


def rbd_trash(ceph, pool: str) -> list:
    return json.loads(ceph.rbd("trash", "ls", "--format", "json", "--pool", pool))


def rbd_used(ceph, pool: str, image: str) -> int:
    """Bytes the image allocates in the cluster (`rbd du`: whole objects)."""
    (entry,) = json.loads(ceph.rbd("du", "--format", "json", f"{pool}/{image}"))["images"]
    return entry["used_size"]


def sha256_head(path: str, size: int = SIZE) -> str:
    """sha256 of the first `size` bytes of a file or device (a device may be longer)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = size
        while remaining:
            block = f.read(min(remaining, MiB))
            assert block, f"{path} ended {remaining} bytes early"
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def allocated(path: str) -> int:
    return os.stat(path).st_blocks * 512


def loops_over(vg) -> str:
    return os.popen(f"losetup --list --noheadings --associated {vg.device}").read()


# -- one migration, the checks every case shares ----------------------------
def migrate(svc, volume_id: str, dest: str) -> dict:
    response = svc.migrate_volume(volume_id, dest)
    assert response.accepted, response.message
    return svc.wait(response.migration_id, 120)


def check_migrated(svc, migration: dict, volume_id: str, dest_host: str, case: str,
                   before: str, size: int = SIZE) -> dict:
    """Succeeded by `case`, the volume on dest_host (node@backend#pool) with the
    same bytes, statuses restored, start ... end notifications, nothing hidden left."""
    assert migration["state"] == "success", migration["error"]
    assert migration["case"] == case
    after = svc.get_volume(volume_id)
    assert after["host"] == dest_host
    assert (after["status"], after["migration_status"]) == ("available", "success")
    assert volume_sha256(svc, after) == before
    assert [v["id"] for v in svc.list_volumes(include_hidden=True)] == [volume_id]
    events = [n for n in notifications() if n["payload"]["migration_id"] == migration["id"]]
    kinds = [n["event_type"] for n in events]
    assert kinds[0] == "volume.migration.start" and kinds[-1] == "volume.migration.end", kinds
    assert "volume.migration.error" not in kinds
    assert kinds.count("volume.migration.progress") >= 1
    progress = [n["payload"] for n in events if n["event_type"] == "volume.migration.progress"]
    positions = [p["bytes_copied"] for p in progress]
    assert positions == sorted(set(positions)) and positions[-1] == size
    assert progress[-1]["percent"] == 100.0
    for n in events:
        assert n["payload"]["volume_id"] == volume_id
        assert n["payload"]["destination_host"].startswith(dest_host.split("#")[0])
    return after


def check_on_rbd(ceph, volume: dict, pool: str) -> str:
    """The volume is one image of `pool`, at its provider_location; its name."""
    image = f"volume-{object_id(volume)}"
    assert rbd_images(ceph, pool) == [image]
    assert volume["provider_location"] == f"rbd://{ceph.fsid}/{pool}/{image}"
    return image


def check_rbd_gone(ceph, pool: str) -> None:
    assert rbd_images(ceph, pool) == []
    assert rbd_trash(ceph, pool) == []


# -- local files ----------------------------------------------------------------
def test_local_to_rbd_and_back(make_service, rbd_backends, tmp_path, ceph):
    rbd = rbd_backends("r1")
    pool = rbd["r1"]["rbd_pool"]
    svc = make_service(backends={"a": {}, **rbd})
    volume = svc.create_volume(SIZE, host("a"))
    before = write_volume(svc, volume, DATA)
    source_file = volume["provider_location"]
    assert sha256_of(source_file) == before
    source_allocated = allocated(source_file)
    assert DATA_BYTES <= source_allocated < SIZE / 2

    to_rbd = migrate(svc, volume["id"], host("r1"))
    on_rbd = check_migrated(svc, to_rbd, volume["id"], f"{host('r1')}#r1",
                            "host-copy-file-io", before)
    image = check_on_rbd(ceph, on_rbd, pool)
    # Thin: only the objects the file has data in (RBD cannot allocate less).
    assert rbd_used(ceph, pool, image) == THIN
    assert volume_files(tmp_path, "a") == [] and not os.path.exists(source_file)

    back = migrate(svc, volume["id"], host("a"))
    final = check_migrated(svc, back, volume["id"], f"{host('a')}#a", "host-copy-file-io",
                           before)
    assert sha256_of(final["provider_location"]) == before
    assert os.path.getsize(final["provider_location"]) == SIZE
    # The whole objects read from RBD were written back page by page: only the data.
    assert DATA_BYTES <= allocated(final["provider_location"]) <= source_allocated
    assert volume_files(tmp_path, "a") == [os.path.basename(final["provider_location"])]
    check_rbd_gone(ceph, pool)


# -- LVM ----------------------------------------------------------------------------
@pytest.mark.skipif(not HAS_LVM, reason=NO_LVM_REASON)
def test_lvm_to_rbd_and_back(make_service, make_vg, rbd_backends, ceph):
    vg = make_vg(256 * MiB)
    rbd = rbd_backends("r1")
    pool = rbd["r1"]["rbd_pool"]
    svc = make_service(backends={"lvm": vg.backend(), **rbd})
    volume = svc.create_volume(SIZE, host("lvm"))
    before = write_volume(svc, volume, DATA)  # the holes: a fresh VG's zeros
    assert vg.lvs() == [f"volume-{volume['id']}"]

    to_rbd = migrate(svc, volume["id"], host("r1"))
    on_rbd = check_migrated(svc, to_rbd, volume["id"], f"{host('r1')}#r1",
                            "host-copy-file-io", before)
    image = check_on_rbd(ceph, on_rbd, pool)
    # The LV is fully allocated, its zeros were not written: the image is thin.
    assert rbd_used(ceph, pool, image) == THIN
    assert vg.lvs() == [] and loops_over(vg) == ""

    back = migrate(svc, volume["id"], host("lvm"))
    final = check_migrated(svc, back, volume["id"], f"{host('lvm')}#{vg.name}",
                           "host-copy-file-io", before)
    assert vg.lvs() == [f"volume-{object_id(final)}"]
    # The LV's device itself (a linear LV: only the data is checked).
    driver = svc.drivers["lvm"]
    connection = driver.connect_volume(volume_ref(final), False)
    try:
        assert sha256_head(connection["path"]) == before
    finally:
        driver.disconnect_volume(volume_ref(final), connection)
    assert loops_over(vg) == ""
    check_rbd_gone(ceph, pool)


# -- the Storwize simulator --------------------------------------------------------
def vdisk_file(array, vdisk: str) -> str:
    lines = array.cli(f"svcinfo lsvdisk -delim ! {vdisk}").splitlines()
    return dict(line.split("!", 1) for line in lines)["sim_data_path"]


def test_storwize_to_rbd_and_back(make_service, make_array, rbd_backends, ceph):
    array = make_array()
    rbd = rbd_backends("r1")
    pool = rbd["r1"]["rbd_pool"]
    svc = make_service(backends={"svc": array.backend(), **rbd})
    volume = svc.create_volume(SIZE, host("svc") + "#pool1")
    before = write_volume(svc, volume, DATA)
    vdisk = f"volume-{volume['id']}"
    assert array.vdisks() == {vdisk: "pool1"}
    source_file = vdisk_file(array, vdisk)
    assert sha256_head(source_file) == before
    source_allocated = allocated(source_file)
    assert DATA_BYTES <= source_allocated < SIZE / 2

    to_rbd = migrate(svc, volume["id"], host("r1"))
    on_rbd = check_migrated(svc, to_rbd, volume["id"], f"{host('r1')}#r1",
                            "host-copy-file-io", before)
    image = check_on_rbd(ceph, on_rbd, pool)
    assert rbd_used(ceph, pool, image) == THIN
    assert array.vdisks() == {}
    assert not os.path.exists(source_file)

    back = migrate(svc, volume["id"], host("svc") + "#pool2")
    final = check_migrated(svc, back, volume["id"], f"{host('svc')}#pool2",
                           "host-copy-file-io", before)
    new_vdisk = f"volume-{object_id(final)}"
    assert array.vdisks() == {new_vdisk: "pool2"}
    dest_file = vdisk_file(array, new_vdisk)
    assert sha256_head(dest_file) == before
    assert DATA_BYTES <= allocated(dest_file) <= source_allocated
    check_rbd_gone(ceph, pool)


# -- RBD to RBD: Ceph's live migration -------------------------------------------
def test_rbd_to_rbd_in_another_pool_is_moved_by_ceph(make_service, rbd_backends, ceph):
    backends = rbd_backends("r1", "r2")
    pool1, pool2 = backends["r1"]["rbd_pool"], backends["r2"]["rbd_pool"]
    svc = make_service(backends=backends)
    size = 64 * MiB
    volume = svc.create_volume(size, host("r1"))
    # Data in every object but two: holes the move must keep.
    extents = [(0, 40 * MiB), (48 * MiB + 4096, 16 * MiB - 4096)]
    before = write_volume(svc, volume, extents)
    image = f"volume-{volume['id']}"
    source_used = rbd_used(ceph, pool1, image)
    assert source_used == 14 * OBJECT

    source_driver = svc.drivers["r1"]
    assert source_driver.get_volume_stats()["migration_progress_report"] is True
    answers: list = []
    asked = source_driver.get_migration_progress

    def spied(ref):
        answer = asked(ref)
        answers.append(answer)
        return answer

    source_driver.get_migration_progress = spied

    migration = migrate(svc, volume["id"], host("r2"))
    after = check_migrated(svc, migration, volume["id"], f"{host('r2')}#r2",
                           "driver-assisted", before, size)
    assert after["name_id"] is None  # the same image, moved by Ceph: nothing copied here
    assert rbd_images(ceph, pool2) == [image]
    assert after["provider_location"] == f"rbd://{ceph.fsid}/{pool2}/{image}"
    check_rbd_gone(ceph, pool1)
    assert rbd_used(ceph, pool2, image) <= source_used
    assert rbd_used(ceph, pool2, image) == 14 * OBJECT  # the holes stayed holes

    progress = [n["payload"]["bytes_copied"] for n in notifications("volume.migration.progress")
                if n["payload"]["migration_id"] == migration["id"]]
    assert svc.get_migration(migration["id"])["progress_reports"] == len(progress)
    # The progress came from the driver (capability migration_progress_report:
    # Ceph's execute callback, counted by the driver) while Ceph moved the image.
    # The move lasts about 0.5 s here, the monitor asks every 0.1 s: at least one
    # report under way, and every one of them a number the driver gave.
    assert all(a is None or a[1] == size for a in answers)
    reported = {a[0] for a in answers if a is not None}
    under_way = [p for p in progress if p < size]
    assert under_way and set(under_way) <= reported, (progress, answers)
