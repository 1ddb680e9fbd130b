"""The Storwize driver against the Storwize CLI simulator, over real SSH on 127.0.0.1."""

import hashlib
import os
import threading
import time

import pytest
from oslo_config import cfg

from vmtest import MiB, StorwizeArray
from volmigrate.drivers.exceptions import DriverError
from volmigrate.drivers.storwize import StorwizeCommandError, StorwizeDriver


def make_driver(array, tmp_path, **overrides) -> StorwizeDriver:
    conf = cfg.ConfigOpts()
    conf.register_opts(StorwizeDriver.options, group="svc")
    conf([])
    for key, value in dict(array.backend(), **overrides).items():
        if key != "volume_driver":
            conf.set_override(key, value.split(",") if key == "storwize_svc_volpool_name"
                              else value, group="svc")
    driver = StorwizeDriver(conf.svc, "svc", str(tmp_path))
    driver.do_setup()
    return driver


def ref(volume_id, size, pool="pool1") -> dict:
    return {"id": volume_id, "name_id": None, "size": size, "host": f"n@svc#{pool}",
            "provider_location": None}


def sha256_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_cli_formats_and_errors(make_array):
    array = make_array()
    pools = array.cli("svcinfo lsmdiskgrp -bytes -delim !").splitlines()
    assert pools[0].startswith("id!name!status!mdisk_count!vdisk_count!capacity!")
    assert [line.split("!")[1] for line in pools[1:]] == ["pool1", "pool2"]
    assert array.cli("svctask mkvdisk -name v1 -mdiskgrp pool1 -iogrp 0 -size 8 -unit mb") \
        == "Virtual Disk, id [0], successfully created\n"
    detail = dict(line.split("!", 1) for line in
                  array.cli("svcinfo lsvdisk -bytes -delim ! v1").splitlines())
    assert detail["capacity"] == str(8 * MiB) and detail["mdisk_grp_name"] == "pool1"
    assert os.path.getsize(detail["sim_data_path"]) == 8 * MiB
    assert array.cli("svcinfo lsmigrate -delim !") == ""
    for command, code in [("svcinfo lsvdisk nosuch", "CMMVC5754E"),
                          ("svctask rmvdisk nosuch", "CMMVC5753E"),
                          ("svctask mkvdisk -name v1 -mdiskgrp pool1 -size 1 -unit mb",
                           "CMMVC6035E"),
                          ("svctask mkvdisk -name v2 -mdiskgrp nosuch -size 1 -unit mb",
                           "CMMVC5754E"),
                          ("svctask mkvdisk -name v2 -mdiskgrp pool1 -size 17 -unit gb",
                           "CMMVC5860E"),
                          ("svctask migratevdisk -mdiskgrp pool1 -vdisk v1", "CMMVC6096E"),
                          ("svctask frobnicate", "CMMVC6051E"),
                          ("svcinfo lsvdisk -bogus", "CMMVC5709E")]:
        with pytest.raises(RuntimeError, match=code):
            array.cli(command)


def test_migratevdisk_moves_the_data_with_progress_and_survives_a_restart(make_array):
    array = make_array(migrate_rate="32M")
    array.cli("svctask mkvdisk -name v -mdiskgrp pool1 -iogrp 0 -size 64 -unit mb")
    path = dict(line.split("!", 1) for line in
                array.cli("svcinfo lsvdisk -delim ! v").splitlines())["sim_data_path"]
    with open(path, "r+b") as f:  # random data with a hole in the middle
        f.write(os.urandom(16 * MiB))
        f.seek(40 * MiB)
        f.write(os.urandom(24 * MiB))
    before = sha256_file(path)
    array.cli("svctask migratevdisk -mdiskgrp pool2 -vdisk v")
    with pytest.raises(RuntimeError, match="CMMVC5859E"):  # one move at a time
        array.cli("svctask migratevdisk -mdiskgrp pool2 -vdisk v")
    with pytest.raises(RuntimeError, match="CMMVC5840E"):  # no delete while it moves
        array.cli("svctask rmvdisk -force v")
    seen = []
    while len(seen) < 3:
        out = array.cli("svcinfo lsmigrate -delim !")
        block = dict(line.split("!", 1) for line in out.splitlines() if line)
        assert block["migrate_type"] == "MDisk_Group_Migration"
        seen.append(int(block["progress"]))
        time.sleep(0.3)
    assert seen == sorted(seen) and seen[-1] > seen[0]
    array.kill()  # the array dies mid-move...
    array.start()  # ...and carries on from its state file
    deadline = time.monotonic() + 30
    while array.cli("svcinfo lsmigrate -delim !") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert array.vdisks() == {"v": "pool2"}
    moved = dict(line.split("!", 1) for line in
                 array.cli("svcinfo lsvdisk -delim ! v").splitlines())["sim_data_path"]
    assert "pool2" in moved and not os.path.exists(path)
    assert sha256_file(moved) == before
    assert os.stat(moved).st_blocks * 512 < 48 * MiB  # the hole stayed a hole


def test_driver_volumes_connections_and_stats(make_array, tmp_path):
    array = make_array()
    driver = make_driver(array, tmp_path)
    stats = driver.get_volume_stats()
    assert stats["migration_progress_report"] is True
    assert [p["pool_name"] for p in stats["pools"]] == ["pool1", "pool2"]
    assert stats["pools"][0]["total_capacity_gb"] == 16.0
    volume = ref("a", 10 * MiB)
    assert driver.create_volume(volume) == {"provider_location": "pool1/volume-a"}
    assert driver.create_volume(volume) == {"provider_location": "pool1/volume-a"}  # re-run
    assert driver.get_volume_stats()["pools"][0]["free_capacity_gb"] == 15.99
    connection = driver.connect_volume(volume, writable=True)
    assert driver.connect_volume(volume, writable=True) == connection  # mapped once
    assert "volmigrate-svc" in array.cli("svcinfo lsvdiskhostmap -delim ! volume-a")
    assert driver.connection_valid(volume, connection)
    driver.disconnect_volume(volume, connection)
    driver.disconnect_volume(volume, connection)
    assert "volmigrate-svc" not in array.cli("svcinfo lsvdiskhostmap -delim ! volume-a")
    driver.delete_volume(volume)
    driver.delete_volume(volume)
    assert array.vdisks() == {}
    assert not driver.connection_valid(volume, connection)


def test_driver_moves_within_the_array_once(make_array, tmp_path):
    array = make_array(migrate_rate="64M")
    driver = make_driver(array, tmp_path)
    volume = ref("m", 64 * MiB)
    driver.create_volume(volume)
    assert driver.can_migrate_within_backend(volume, "pool2")
    assert not driver.can_migrate_within_backend(volume, "pool1")  # already there
    assert not driver.can_migrate_within_backend(volume, "elsewhere")
    driver.migrate_within_backend(volume, "pool2")
    driver.migrate_within_backend(volume, "pool2")  # a resumed flow: no second move
    progress = driver.get_migration_progress(volume)
    assert progress is not None and progress[1] == 64 * MiB
    while driver.get_migration_progress(volume) is not None:
        time.sleep(0.1)
    assert driver.volume_pool(volume) == "pool2"
    driver.migrate_within_backend(volume, "pool2")  # done already: nothing to do
    assert driver.get_migration_progress(volume) is None


def test_array_errors_carry_their_code(make_array, tmp_path):
    array = make_array(extra=("--pool-capacity", "32M"))
    driver = make_driver(array, tmp_path)
    with pytest.raises(StorwizeCommandError) as info:
        driver.create_volume(ref("big", 64 * MiB))
    assert info.value.code == "CMMVC5860E"
    assert "mkvdisk failed: CMMVC5860E" in str(info.value)
    with pytest.raises(DriverError, match="has no pool nosuch"):
        make_driver(array, tmp_path, storwize_svc_volpool_name="pool1,nosuch")
    with pytest.raises(DriverError, match="refused the login"):
        make_driver(array, tmp_path, san_password="wrong")


def test_ssh_retries_until_the_array_is_back(make_array, tmp_path):
    array = make_array()
    driver = make_driver(array, tmp_path, storwize_ssh_retries="6")
    array.kill()
    result = {}

    def call():
        try:
            result["pool"] = driver.get_volume_stats()["pools"][0]["pool_name"]
        except Exception as exc:  # reported by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.5)
    array.start()  # the same port, the same data
    thread.join(60)
    assert result == {"pool": "pool1"}


def test_array_gone_for_good(tmp_path):
    array = StorwizeArray(tmp_path)
    driver = make_driver(array, tmp_path, storwize_ssh_retries="2")
    array.kill()
    with pytest.raises(DriverError, match=f"cannot reach the Storwize array at "
                                          f"127.0.0.1:{array.port}"):
        driver.get_volume_stats()
