"""The spec's test matrix: every backend to every other, with real data.

LVM (real lvm2, loop activation), the Storwize simulator (over real SSH), local
files reached by path, and local files reached only as a file-like object
(`local_access = stream`: the file-I/O copy), all in one service.
Each scenario moves 64 MiB of random data (with holes at the middle and the
end) and checks the bytes, the statuses, the notifications and that nothing
is left behind on either side.
"""

import os

import pytest

from vmtest import (HAS_LVM, NO_LVM_REASON, PATIENCE, MiB, host, notifications,
                    volume_files, volume_sha256, wait_for, write_volume)
from volmigrate.drivers.base import object_id

pytestmark = pytest.mark.skipif(not HAS_LVM, reason=NO_LVM_REASON)

SIZE = 72 * MiB
DATA = [(0, 16 * MiB), (20 * MiB, 48 * MiB)]  # 64 MiB of random data, holes after each


class World:
    """One service with every kind of backend, and a way to list each one's objects."""

    def __init__(self, make_service, make_vg, make_array, tmp_path, array_options=None,
                 ssh_retries=3, **defaults):
        self.vg1, self.vg2 = make_vg(), make_vg()
        self.array = make_array(**(array_options or {}))
        self.tmp_path = tmp_path
        defaults.setdefault("volume_copy_bps_limit", str(256 * MiB))  # progress to see
        self.svc = make_service(backends={
            "lvm1": self.vg1.backend(), "lvm2": self.vg2.backend(),
            "svc": self.array.backend(storwize_ssh_retries=str(ssh_retries)),
            "local": {}, "stream": {"local_access": "stream"},  # only a file-like object
        }, **defaults)

    def objects(self, backend: str) -> list[str]:
        if backend == "lvm1":
            return self.vg1.lvs()
        if backend == "lvm2":
            return self.vg2.lvs()
        if backend == "svc":
            return sorted(self.array.vdisks())
        return volume_files(self.tmp_path, backend)


@pytest.fixture
def world(make_service, make_vg, make_array, tmp_path):
    return World(make_service, make_vg, make_array, tmp_path)


def backend_of(host_text: str) -> str:
    return host_text.split("@", 1)[1].split("#", 1)[0]


def migrate_and_check(world, source: str, dest: str, case: str, force_host_copy=False):
    svc = world.svc
    volume = svc.create_volume(SIZE, source, name="scenario")
    before = write_volume(svc, volume, DATA)
    response = svc.migrate_volume(volume["id"], dest, force_host_copy=force_host_copy)
    assert response.accepted, response.message
    migration = svc.wait(response.migration_id, timeout=PATIENCE)

    assert migration["state"] == "success", migration["error"]
    assert migration["case"] == case
    moved = svc.get_volume(volume["id"])
    assert moved["host"].startswith(dest)
    assert (moved["status"], moved["migration_status"]) == ("available", "success")
    assert volume_sha256(svc, moved) == before

    events = [n for n in notifications() if n["payload"]["migration_id"] == migration["id"]]
    kinds = [n["event_type"] for n in events]
    assert kinds[0] == "volume.migration.start" and kinds[-1] == "volume.migration.end"
    assert kinds.count("volume.migration.progress") >= 1
    assert "volume.migration.error" not in kinds
    progress = [n["payload"] for n in events if n["event_type"] == "volume.migration.progress"]
    positions = [p["bytes_copied"] for p in progress]
    assert positions == sorted(set(positions)) and positions[-1] == SIZE  # strictly rising
    percents = [p["percent"] for p in progress]  # rounded: two reports may show 100.0
    assert percents == sorted(percents) and percents[-1] == 100.0

    # Nothing left behind: one object, the volume's, on the destination only.
    assert [v["id"] for v in svc.list_volumes(include_hidden=True)] == [volume["id"]]
    src_backend, dst_backend = backend_of(source), backend_of(dest)
    expected = f"volume-{object_id(moved)}"
    if src_backend != dst_backend:
        assert world.objects(src_backend) == []
    assert world.objects(dst_backend) == [expected]
    assert os.popen("losetup --list --noheadings --associated " + world.vg1.device).read() == ""
    assert os.popen("losetup --list --noheadings --associated " + world.vg2.device).read() == ""
    return migration, moved, percents


def test_lvm_to_lvm(world):
    migrate_and_check(world, host("lvm1"), host("lvm2"), "host-copy-paths")


def test_lvm_to_storwize(world):
    migrate_and_check(world, host("lvm1"), host("svc") + "#pool2", "host-copy-paths")


def test_storwize_to_lvm(world):
    migrate_and_check(world, host("svc"), host("lvm2"), "host-copy-paths")


def test_storwize_pool_to_pool_is_moved_by_the_array(make_service, make_vg, make_array,
                                                     tmp_path):
    # The array moves 16 MiB/s: 4.5 s in which the monitor (every 0.1 s) sees it move.
    world = World(make_service, make_vg, make_array, tmp_path,
                  array_options={"migrate_rate": "16M"})
    _, moved, percents = migrate_and_check(world, host("svc") + "#pool1",
                                           host("svc") + "#pool2", "driver-assisted")
    assert moved["name_id"] is None  # the same vdisk: the array moved it, we copied nothing
    assert moved["provider_location"] == f"pool2/volume-{moved['id']}"
    assert world.array.vdisks() == {f"volume-{moved['id']}": "pool2"}
    # Progress came from the array while it moved.
    assert len([p for p in percents if 0 < p < 100]) >= 2


def test_storwize_pool_to_pool_with_force_host_copy(world):
    _, moved, _ = migrate_and_check(world, host("svc") + "#pool1", host("svc") + "#pool2",
                                    "host-copy-paths", force_host_copy=True)
    assert moved["name_id"] is not None  # a new vdisk, copied through this host
    assert world.array.vdisks() == {f"volume-{moved['name_id']}": "pool2"}


def test_local_to_file_io_backend(world):
    migrate_and_check(world, host("local"), host("stream"), "host-copy-file-io")


def test_file_io_backend_to_storwize(world):
    migrate_and_check(world, host("stream"), host("svc") + "#pool1", "host-copy-file-io")


# -- failures ------------------------------------------------------------------
def assert_failed_and_usable(world, volume, migration, before, reason_part):
    svc = world.svc
    assert migration["state"] == "error"
    assert reason_part in migration["error"], migration["error"]
    after = svc.get_volume(volume["id"])
    assert after["host"] == volume["host"]
    assert (after["status"], after["migration_status"]) == ("available", "error")
    assert volume_sha256(svc, after) == before
    errors = [n for n in notifications("volume.migration.error")
              if n["payload"]["migration_id"] == migration["id"]]
    assert len(errors) == 1 and reason_part in errors[0]["payload"]["error"]
    assert [v["id"] for v in svc.list_volumes(include_hidden=True)] == [volume["id"]]
    svc.attach_volume(volume["id"])  # usable
    svc.detach_volume(volume["id"])


def test_array_refuses_the_move(make_service, make_vg, make_array, tmp_path):
    world = World(make_service, make_vg, make_array, tmp_path,
                  array_options={"extra": ("--fail", "migratevdisk=CMMVC5859E")})
    svc = world.svc
    volume = svc.create_volume(SIZE, host("svc") + "#pool1")
    before = write_volume(svc, volume, DATA)
    migration = svc.wait(svc.migrate_volume(volume["id"], host("svc") + "#pool2")
                         .migration_id, PATIENCE)
    assert_failed_and_usable(world, volume, migration, before, "CMMVC5859E")
    assert world.array.vdisks() == {f"volume-{volume['id']}": "pool1"}


def test_pool_out_of_space_for_the_array_move(make_service, make_vg, make_array, tmp_path):
    world = World(make_service, make_vg, make_array, tmp_path,
                  array_options={"extra": ("--pool-capacity", "100M")})
    svc = world.svc
    svc.create_volume(64 * MiB, host("svc") + "#pool2")  # pool2 has 36M left
    volume = svc.create_volume(SIZE, host("svc") + "#pool1")
    before = write_volume(svc, volume, DATA)
    migration = svc.wait(svc.migrate_volume(volume["id"], host("svc") + "#pool2")
                         .migration_id, PATIENCE)
    assert migration["case"] == "driver-assisted"
    assert "CMMVC5860E" in migration["error"]
    assert svc.get_volume(volume["id"])["status"] == "available"
    assert volume_sha256(svc, svc.get_volume(volume["id"])) == before


def test_pool_out_of_space_for_a_host_copy(make_service, make_vg, make_array, tmp_path):
    world = World(make_service, make_vg, make_array, tmp_path,
                  array_options={"extra": ("--pool-capacity", "64M")})
    svc = world.svc
    volume = svc.create_volume(SIZE, host("lvm1"))
    before = write_volume(svc, volume, DATA)
    migration = svc.wait(svc.migrate_volume(volume["id"], host("svc") + "#pool1")
                         .migration_id, PATIENCE)
    assert_failed_and_usable(world, volume, migration, before, "CMMVC5860E")
    assert world.array.vdisks() == {}
    assert world.vg1.lvs() == [f"volume-{volume['id']}"]


def test_ssh_drops_mid_move_and_comes_back(make_service, make_vg, make_array, tmp_path,
                                           caplog):
    # The move is held (72 MiB at 1 MiB/s: 72 s, far longer than the checks
    # before the kill) so that it is surely cut in the middle; the array comes
    # back faster, to finish it soon. Up to 40 attempts per SSH call (over a
    # minute) cover the restart of the array on any loaded machine; they are
    # only spent while it is down.
    world = World(make_service, make_vg, make_array, tmp_path,
                  array_options={"migrate_rate": "1M"}, ssh_retries=40)
    svc, array = world.svc, world.array
    volume = svc.create_volume(SIZE, host("svc") + "#pool1")
    before = write_volume(svc, volume, DATA)
    response = svc.migrate_volume(volume["id"], host("svc") + "#pool2")
    wait_for(lambda: (svc.get_migration(response.migration_id)["progress_reports"] or 0) >= 2)
    caplog.clear()
    array.kill()  # the array's SSH service goes away mid-move...
    # ...the service notices (a call to the array fails and is tried again)...
    wait_for(lambda: any("trying again" in r.getMessage() for r in caplog.records))
    assert svc.get_migration(response.migration_id)["state"] == "running"
    array.migrate_rate = "64M"
    array.start()  # ...and it comes back on the same port; the move resumes on the array
    migration = svc.wait(response.migration_id, PATIENCE)
    assert migration["state"] == "success", migration["error"]
    moved = svc.get_volume(volume["id"])
    assert moved["host"] == host("svc") + "#pool2"
    assert volume_sha256(svc, moved) == before
    assert array.vdisks() == {f"volume-{volume['id']}": "pool2"}


def test_ssh_gone_for_good_mid_move(make_service, make_vg, make_array, tmp_path):
    # The move is held (72 MiB at 1 MiB/s: 72 s) so that the kill surely cuts it.
    world = World(make_service, make_vg, make_array, tmp_path,
                  array_options={"migrate_rate": "1M"})
    svc, array = world.svc, world.array
    volume = svc.create_volume(SIZE, host("svc") + "#pool1")
    write_volume(svc, volume, DATA)
    response = svc.migrate_volume(volume["id"], host("svc") + "#pool2")
    wait_for(lambda: array.cli("svcinfo lsmigrate -delim !") != "")  # the array moves it
    array.kill()
    migration = svc.wait(response.migration_id, PATIENCE)
    assert migration["state"] == "error"
    assert "lost track of the backend's move" in migration["error"]
    assert "cannot reach the Storwize array" in migration["error"]
    after = svc.get_volume(volume["id"])
    assert (after["status"], after["migration_status"]) == ("available", "error")
