"""The LVM driver on real lvm2, with LVs reached through loop activation.

This machine has no device-mapper, so lvm2 keeps only the metadata and each
LV is exposed as a loop device over its physical volume's extents. Thin LVs
need device-mapper; their test says so where it cannot run.
"""

import hashlib
import os
import subprocess

import pytest
from oslo_config import cfg

from vmtest import HAS_LVM, NO_LVM_REASON, MiB, host
from volmigrate.drivers.exceptions import DriverError
from volmigrate.drivers.lvm import LVMDriver, device_mapper_works

pytestmark = pytest.mark.skipif(not HAS_LVM, reason=NO_LVM_REASON)

EXTENT = 4 * MiB
NO_DM_REASON = "no device-mapper: thin pools cannot be activated on this host"


def make_driver(vg, tmp_path, **overrides) -> LVMDriver:
    conf = cfg.ConfigOpts()
    conf.register_opts(LVMDriver.options, group="lvm")
    conf([])
    for key, value in dict(vg.backend(), **overrides).items():
        if key != "volume_driver":
            conf.set_override(key, value, group="lvm")
    driver = LVMDriver(conf.lvm, "lvm", str(tmp_path))
    driver.do_setup()
    return driver


def ref(volume_id: str, size: int, vg) -> dict:
    return {"id": volume_id, "name_id": None, "size": size,
            "host": f"n@lvm#{vg.name}", "provider_location": None}


def write_at(driver, volume, offset, data) -> None:
    connection = driver.connect_volume(volume, writable=True)
    try:
        with open(connection["path"], "r+b") as f:
            f.seek(offset)
            f.write(data)
            os.fsync(f.fileno())
    finally:
        driver.disconnect_volume(volume, connection)


def read_at(driver, volume, offset, length) -> bytes:
    connection = driver.connect_volume(volume, writable=False)
    try:
        with open(connection["path"], "rb") as f:
            f.seek(offset)
            return f.read(length)
    finally:
        driver.disconnect_volume(volume, connection)


def loops_over(vg) -> str:
    return os.popen(f"losetup --list --noheadings --associated {vg.device}").read()


def test_volumes_are_real_lvs_and_loop_activation_reaches_their_extents(make_vg, tmp_path):
    vg = make_vg()
    driver = make_driver(vg, tmp_path)
    first = ref("one", 18 * MiB + 1, vg)  # not a whole number of extents, nor of sectors
    second = ref("two", 20 * MiB, vg)
    assert driver.create_volume(first) == {"provider_location": f"{vg.name}/volume-one"}
    driver.create_volume(second)
    assert vg.lvs() == ["volume-one", "volume-two"]
    size = vg.run("lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size",
                  f"{vg.name}/volume-one").stdout.strip()
    assert int(size) == 5 * EXTENT  # rounded up to whole extents

    a, b = os.urandom(16 * MiB), os.urandom(8 * MiB)
    write_at(driver, first, 2 * MiB, a)
    write_at(driver, second, 0, b)
    assert read_at(driver, first, 2 * MiB, len(a)) == a
    assert read_at(driver, second, 0, len(b)) == b  # the two LVs do not overlap

    # The loop device maps exactly the extents lvm2 gave the LV: read them from the PV.
    segment = vg.run("lvs", "--noheadings", "-o", "seg_pe_ranges",
                     f"{vg.name}/volume-one").stdout.strip()
    first_extent = int(segment.rpartition(":")[2].split("-")[0])
    pe_start = int(vg.run("pvs", "--noheadings", "--units", "b", "--nosuffix", "-o",
                          "pe_start", vg.device).stdout.strip())
    with open(vg.device, "rb") as pv:
        pv.seek(pe_start + first_extent * EXTENT + 2 * MiB)
        assert hashlib.sha256(pv.read(len(a))).digest() == hashlib.sha256(a).digest()
    assert loops_over(vg) == ""  # every connection released


def test_create_and_delete_are_idempotent_and_free_the_space(make_vg, tmp_path):
    vg = make_vg()
    driver = make_driver(vg, tmp_path)
    free = driver.get_volume_stats()["pools"][0]["free_capacity_gb"]
    volume = ref("v", 100 * MiB, vg)
    driver.create_volume(volume)
    driver.create_volume(volume)  # a re-run after a crash: accepted
    assert vg.lvs() == ["volume-v"]
    assert driver.get_volume_stats()["pools"][0]["free_capacity_gb"] < free
    driver.delete_volume(volume)
    driver.delete_volume(volume)
    assert vg.lvs() == []
    assert driver.get_volume_stats()["pools"][0]["free_capacity_gb"] == free
    with pytest.raises(DriverError, match="does not exist"):
        driver.connect_volume(volume, False)


def test_volume_group_too_small(make_vg, tmp_path):
    vg = make_vg(size=64 * MiB)
    driver = make_driver(vg, tmp_path)
    with pytest.raises(DriverError, match="insufficient free space"):
        driver.create_volume(ref("big", 512 * MiB, vg))
    assert vg.lvs() == []


def test_setup_errors_are_clear(make_vg, tmp_path):
    vg = make_vg()
    with pytest.raises(DriverError, match="volume group nosuch-vg not found"):
        make_driver(vg, tmp_path, volume_group="nosuch-vg")
    if not device_mapper_works():
        assert make_driver(vg, tmp_path, lvm_activation="auto").activation == "loop"
        with pytest.raises(DriverError, match="thin needs device-mapper"):
            make_driver(vg, tmp_path, lvm_type="thin")
        with pytest.raises(DriverError, match="no working device-mapper"):
            make_driver(vg, tmp_path, lvm_activation="dm")
    with pytest.raises(DriverError, match="lvm_conf_file .* does not exist"):
        make_driver(vg, tmp_path, lvm_conf_file=str(tmp_path / "missing.conf"))
    other_name = tmp_path / "custom.conf"
    other_name.write_text("")
    with pytest.raises(DriverError, match="must be named lvm.conf"):
        make_driver(vg, tmp_path, lvm_conf_file=str(other_name))


def test_root_helper_prefixes_commands_and_keeps_lvm_system_dir(make_vg, tmp_path):
    # A helper that clears the environment, as sudo does: the private lvm.conf
    # must still reach lvm2. One that hides every device proves it does.
    vg = make_vg()
    helper = "env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin"
    blind = tmp_path / "blind"
    blind.mkdir()
    (blind / "lvm.conf").write_text('devices { global_filter = [ "r|.*|" ] }\n')
    with pytest.raises(DriverError, match=f"volume group {vg.name} not found"):
        make_driver(vg, tmp_path, root_helper=helper, lvm_conf_file=str(blind / "lvm.conf"))
    driver = make_driver(vg, tmp_path, root_helper=helper)
    volume = ref("v", 4 * MiB, vg)
    driver.create_volume(volume)
    connection = driver.connect_volume(volume, writable=True)
    assert driver.connection_valid(volume, connection)
    driver.disconnect_volume(volume, connection)
    driver.delete_volume(volume)
    assert vg.lvs() == [] and loops_over(vg) == ""


def test_connect_reuses_a_loop_left_by_a_crash(make_vg, tmp_path):
    vg = make_vg()
    driver = make_driver(vg, tmp_path)
    volume = ref("v", 16 * MiB, vg)
    driver.create_volume(volume)
    first = driver.connect_volume(volume, writable=True)
    again = driver.connect_volume(volume, writable=True)  # a resumed flow connects again
    assert again == first
    assert driver.connection_valid(volume, first)
    driver.disconnect_volume(volume, first)
    assert loops_over(vg) == ""
    assert not driver.connection_valid(volume, first)
    driver.disconnect_volume(volume, first)  # twice is fine

    reading = driver.connect_volume(volume, writable=False)
    assert reading["path"] != first["path"] or not driver.connection_valid(volume, first)
    with pytest.raises(OSError):  # a read-only connection cannot change the volume
        with open(reading["path"], "r+b", buffering=0) as f:
            f.write(bytes(4096))
            os.fsync(f.fileno())
    driver.disconnect_volume(volume, reading)


def test_connection_invalid_once_its_loop_or_its_extents_are_gone(make_vg, tmp_path):
    vg = make_vg()
    driver = make_driver(vg, tmp_path)
    volume = ref("v", 8 * MiB, vg)
    driver.create_volume(volume)
    connection = driver.connect_volume(volume, writable=False)
    subprocess.run(["losetup", "--detach", connection["path"]], check=True)  # e.g. a reboot
    assert not driver.connection_valid(volume, connection)
    driver.disconnect_volume(volume, connection)  # nothing left to detach: fine

    # The loop survives but the LV was removed behind our back and its
    # extents given to another volume: the connection no longer reaches it.
    connection = driver.connect_volume(volume, writable=False)
    vg.run("lvremove", "-f", "--driverloaded", "n", f"{vg.name}/volume-v")
    other = ref("w", 8 * MiB, vg)
    driver.create_volume(other)
    assert driver.connect_volume(other, writable=False)["offset"] == connection["offset"]
    assert not driver.connection_valid(volume, connection)
    driver.delete_volume(other)
    assert loops_over(vg) == ""


def test_loop_activation_refuses_a_multi_segment_lv(make_vg, tmp_path):
    vg = make_vg(size=64 * MiB)
    driver = make_driver(vg, tmp_path)
    for name in ("a", "b", "c"):
        driver.create_volume(ref(name, 4 * MiB, vg))
    driver.delete_volume(ref("b", 4 * MiB, vg))
    # Made by hand, not by the driver: anywhere, so around volume-c.
    vg.run("lvcreate", "--driverloaded", "n", "-an", "-Zn", "-n", "volume-split",
           "-l", "100%FREE", vg.name)
    split = ref("split", 4 * MiB, vg)
    with pytest.raises(DriverError, match="several segments"):
        driver.connect_volume(split, writable=False)
    driver.delete_volume(split)  # still removable
    assert vg.lvs() == ["volume-a", "volume-c"]


def test_delete_detaches_loops_left_over(make_vg, tmp_path):
    vg = make_vg()
    driver = make_driver(vg, tmp_path)
    volume = ref("v", 16 * MiB, vg)
    driver.create_volume(volume)
    driver.connect_volume(volume, writable=False)
    driver.delete_volume(volume)
    assert loops_over(vg) == "" and vg.lvs() == []


@pytest.mark.skipif(not device_mapper_works(), reason=NO_DM_REASON)
def test_thin_volumes(make_vg, tmp_path):
    vg = make_vg()
    vg.run("lvcreate", "--type", "thin-pool", "-L", "256m", "-n", f"{vg.name}-pool", vg.name)
    driver = make_driver(vg, tmp_path, lvm_type="thin", lvm_activation="dm")
    volume = ref("t", 64 * MiB, vg)
    driver.create_volume(volume)
    assert driver.new_volumes_read_zeros()
    data = os.urandom(MiB)
    write_at(driver, volume, 0, data)
    assert read_at(driver, volume, 0, MiB) == data
    driver.delete_volume(volume)


def test_migration_between_two_volume_groups(make_vg, make_service):
    vg1, vg2 = make_vg(), make_vg()
    svc = make_service(backends={"l1": vg1.backend(), "l2": vg2.backend()})
    volume = svc.create_volume(32 * MiB, host("l1"))
    from vmtest import volume_sha256, write_volume
    before = write_volume(svc, volume, [(0, 8 * MiB), (20 * MiB, 4 * MiB)])
    # Stale data in the destination VG's free extents must not show through the holes.
    junk = svc.create_volume(64 * MiB, host("l2"))
    write_volume(svc, junk)
    svc.delete_volume(junk["id"])

    migration = svc.wait(svc.migrate_volume(volume["id"], host("l2")).migration_id, 60)
    assert migration["state"] == "success", migration["error"]
    moved = svc.get_volume(volume["id"])
    assert moved["host"] == f"{host('l2')}#{vg2.name}"
    assert volume_sha256(svc, moved) == before
    assert vg1.lvs() == [] and vg2.lvs() == [f"volume-{migration['id']}"]
    assert loops_over(vg1) == "" and loops_over(vg2) == ""
