"""The Storwize simulator (over real SSH, as a separate process) and the Storwize driver.

The simulator stands in for an IBM Storwize/SVC array: these tests check the
CLI contract the driver relies on (formats, CMMVC error codes, capacity, the
background move of migratevdisk and its lsmigrate progress, a kill -9 in the
middle of a move), then the driver's every method against it.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import paramiko
import pytest
from oslo_config import cfg

from vmtest import PATIENCE, MiB, wait_for
from volmigrate.drivers.exceptions import DriverConfigError, DriverError
from volmigrate.drivers.storwize import StorwizeCommandError, StorwizeDriver

LIST_POOLS = ("id!name!status!mdisk_count!vdisk_count!capacity!extent_size!free_capacity!"
              "virtual_capacity!used_capacity!real_capacity")
LIST_VDISKS = ("id!name!IO_group_id!IO_group_name!status!mdisk_grp_id!mdisk_grp_name!"
               "capacity!type!vdisk_UID")
GiB16 = 16 * 1024 ** 3


class Shell:
    """One SSH connection to the simulator, running commands as an administrator would."""

    def __init__(self, array, password: str | None = None) -> None:
        self.client = paramiko.SSHClient()
        self.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        self.client.connect("127.0.0.1", array.port, array.LOGIN, password or array.PASSWORD,
                            look_for_keys=False, allow_agent=False, timeout=60)
        self.client.get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def run(self, command: str) -> tuple[int, str, str]:
        _, stdout, stderr = self.client.exec_command(command, timeout=60)
        out, err = stdout.read().decode(), stderr.read().decode()
        return stdout.channel.recv_exit_status(), out, err

    def ok(self, command: str) -> str:
        status, out, err = self.run(command)
        assert status == 0 and err == "", (command, status, err)
        return out

    def fails(self, command: str, code: str) -> str:
        status, out, err = self.run(command)
        assert (status, out) == (1, ""), (command, status, out)
        assert err.startswith(code) and err.endswith("\n") and err.count("\n") == 1, err
        assert err.split()[0] == code.split()[0]  # the code, then its text
        return err

    def detail(self, command: str) -> dict[str, str]:
        return dict(line.split("!", 1) for line in self.ok(command).splitlines())

    def progress(self, vdisk_id: str = "0") -> int | None:
        """lsmigrate's progress of the move of that vdisk, None if it is not moving."""
        for block in self.ok("svcinfo lsmigrate -delim !").split("\n\n"):
            info = dict(line.split("!", 1) for line in block.splitlines())
            if info.get("migrate_source_vdisk_index") == vdisk_id:
                return int(info["progress"])
        return None

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def array(make_array):
    """A simulator process with pools pool1 and pool2 (16 GiB each), moving 32 MiB/s."""
    return make_array(migrate_rate="32M")


@pytest.fixture
def shell(array):
    sh = Shell(array)
    yield sh
    sh.close()


def sha256(path: str, size: int | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = os.path.getsize(path) if size is None else size
        while remaining:
            block = f.read(min(remaining, MiB))
            assert block, f"{path} ended early"
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def write_random(path: str, extents: list[tuple[int, int]]) -> None:
    with open(path, "r+b") as f:
        for offset, length in extents:
            f.seek(offset)
            f.write(os.urandom(length))
        f.flush()
        os.fsync(f.fileno())


def data_path(shell: Shell, vdisk: str) -> str:
    return shell.detail(f"svcinfo lsvdisk -delim ! {vdisk}")["sim_data_path"]


def progress_until_done(shell: Shell, timeout: float = PATIENCE) -> list[int]:
    """lsmigrate's progress of vdisk 0, polled until it is not moving any more."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = shell.progress()
        if progress is None:
            return seen
        seen.append(progress)
        time.sleep(0.05)
    raise AssertionError(f"the move did not end in {timeout}s: {seen[-5:]}")


# -- the simulator's CLI --------------------------------------------------------
def test_cli_formats(array, shell):
    system = shell.detail("svcinfo lssystem -delim !")
    assert system["code_level"] == "simulator" and "not a real array" in system["product_name"]

    assert shell.ok("svcinfo lsmdiskgrp -bytes -delim !").splitlines() == [
        LIST_POOLS,
        f"0!pool1!online!1!0!{GiB16}!256!{GiB16}!0!0!0",
        f"1!pool2!online!1!0!{GiB16}!256!{GiB16}!0!0!0"]
    assert shell.ok("svcinfo lsmdiskgrp").splitlines()[1].split() == [
        "0", "pool1", "online", "1", "0", "16.00GB", "256", "16.00GB", "0.00GB", "0.00GB",
        "0.00GB"]
    assert shell.detail("svcinfo lsmdiskgrp -delim ! -bytes pool2") == dict(
        zip(LIST_POOLS.split("!"), ["1", "pool2", "online", "1", "0", str(GiB16), "256",
                                    str(GiB16), "0", "0", "0"]))
    assert shell.ok("svcinfo lsvdisk -delim !") == LIST_VDISKS + "\n"
    assert shell.ok("svcinfo lsmigrate") == ""

    # Options in any order, as the real CLI takes them.
    assert shell.ok("svctask mkvdisk -size 3 -unit mb -iogrp 0 -mdiskgrp pool1 -name v0") \
        == "Virtual Disk, id [0], successfully created\n"
    assert shell.ok("svctask mkvdisk -name 'v1' -mdiskgrp pool2 -iogrp 0 -size 4096 -unit b") \
        == "Virtual Disk, id [1], successfully created\n"
    rows = [line.split("!") for line in shell.ok("svcinfo lsvdisk -bytes -delim !").splitlines()]
    assert rows[0] == LIST_VDISKS.split("!")
    assert [r[:9] for r in rows[1:]] == [
        ["0", "v0", "0", "io_grp0", "online", "0", "pool1", str(3 * MiB), "striped"],
        ["1", "v1", "0", "io_grp0", "online", "1", "pool2", "4096", "striped"]]
    assert len(rows[1][9]) == 32 and rows[1][9] != rows[2][9]  # vdisk_UID

    detail = shell.detail("svcinfo lsvdisk -bytes -delim ! v1")
    assert {k: detail[k] for k in ("id", "name", "status", "mdisk_grp_name", "capacity")} == {
        "id": "1", "name": "v1", "status": "online", "mdisk_grp_name": "pool2",
        "capacity": "4096"}
    assert detail["vdisk_UID"] == rows[2][9]
    path = detail["sim_data_path"]  # the simulator-only extension
    assert os.path.isabs(path) and os.path.getsize(path) == 4096
    assert os.stat(path).st_blocks == 0  # sparse
    # Without -delim the separator is a space; without -bytes sizes are in GB.
    assert "mdisk_grp_name pool2\n" in shell.ok("svcinfo lsvdisk v1")
    assert "capacity 0.00GB\n" in shell.ok("svcinfo lsvdisk v1")

    pool1 = shell.detail("svcinfo lsmdiskgrp -bytes -delim ! pool1")
    assert (pool1["vdisk_count"], pool1["free_capacity"]) == ("1", str(GiB16 - 3 * MiB))

    shell.fails("svctask nosuchcommand", "CMMVC6051E An unsupported action was selected.")
    shell.fails("svcinfo lsvdisk -nosuchoption", "CMMVC5709E")
    shell.fails("ls -l", "CMMVC6051E")
    shell.fails("svcinfo lsvdisk 'unbalanced", "CMMVC6051E")
    shell.fails("svcinfo lsvdisk v1; svctask rmvdisk v1", "CMMVC5754E")  # no shell behind
    assert shell.detail("svcinfo lsvdisk -delim ! v1")["name"] == "v1"


def test_only_exec_with_the_right_password(array, shell):
    with pytest.raises(paramiko.AuthenticationException):
        Shell(array, password="wrong")
    channel = shell.client.get_transport().open_session()
    with pytest.raises(paramiko.SSHException):
        channel.invoke_shell()
    # Several channels of one connection at once, and several connections.
    results = []
    others = [Shell(array) for _ in range(3)]
    threads = [threading.Thread(target=lambda s=s: results.append(
        s.ok("svcinfo lssystem -delim !"))) for s in [shell, shell, *others]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 5 and len(set(results)) == 1
    for other in others:
        other.close()


def test_vdisk_commands_and_their_errors(array, shell):
    shell.ok("svctask mkvdisk -name v1 -mdiskgrp pool1 -iogrp 0 -size 1 -unit gb")
    shell.ok("svctask mkvdisk -name v2 -mdiskgrp pool1 -iogrp 0 -size 2048 -unit kb")
    assert shell.detail("svcinfo lsvdisk -bytes -delim ! v1")["capacity"] == str(1024 ** 3)
    assert shell.detail("svcinfo lsvdisk -bytes -delim ! v2")["capacity"] == str(2 * MiB)
    shell.fails("svctask mkvdisk -name v1 -mdiskgrp pool2 -iogrp 0 -size 1 -unit b",
                "CMMVC6035E")
    shell.fails("svctask mkvdisk -name v3 -mdiskgrp nopool -iogrp 0 -size 1 -unit b",
                "CMMVC5754E")
    shell.fails("svctask mkvdisk -name ../escape -mdiskgrp pool1 -size 1 -unit b",
                "CMMVC6527E")
    shell.fails("svctask mkvdisk -name v3 -mdiskgrp pool1", "CMMVC5707E")
    shell.fails("svctask mkvdisk -name v3 -mdiskgrp pool1 -size 1 -unit pb", "CMMVC5709E")
    shell.fails("svcinfo lsvdisk nosuch", "CMMVC5754E")
    shell.fails("svcinfo lsmdiskgrp nosuch", "CMMVC5754E")
    shell.fails("svctask rmvdisk nosuch",
                "CMMVC5753E The specified object does not exist or is not a suitable "
                "candidate.")

    # Host mappings: hosts need not be defined first.
    assert shell.ok("svctask mkvdiskhostmap -force -host h1 v1") \
        == "Virtual Disk to Host map, id [0], successfully created\n"
    shell.fails("svctask mkvdiskhostmap -host h1 v1", "CMMVC5878E")
    shell.ok("svctask mkvdiskhostmap -host h2 -force v1")
    maps = shell.ok("svcinfo lsvdiskhostmap -delim ! v1").splitlines()
    assert maps[0] == "id!name!SCSI_id!host_id!host_name!vdisk_UID!IO_group_id!IO_group_name"
    assert [m.split("!")[4] for m in maps[1:]] == ["h1", "h2"]
    shell.fails("svctask rmvdisk v1", "CMMVC5840E")  # mapped: needs -force
    shell.ok("svctask rmvdiskhostmap -host h1 v1")
    shell.fails("svctask rmvdiskhostmap -host h1 v1", "CMMVC5842E")
    shell.fails("svctask mkvdiskhostmap -host h1 nosuch", "CMMVC5753E")
    assert shell.ok("svctask rmvdisk -force v1") == ""
    shell.fails("svcinfo lsvdisk v1", "CMMVC5754E")
    shell.ok("svctask rmvdisk v2")
    assert shell.ok("svcinfo lsvdisk -delim !") == LIST_VDISKS + "\n"
    assert os.listdir(os.path.join(array.data_dir, "pool1")) == []


def test_capacity_is_accounted_by_vdisk_capacity(make_array):
    array = make_array(extra=("--pool-capacity", "100M"))
    shell = Shell(array)
    shell.ok("svctask mkvdisk -name a -mdiskgrp pool1 -iogrp 0 -size 64 -unit mb")
    shell.fails("svctask mkvdisk -name b -mdiskgrp pool1 -iogrp 0 -size 37 -unit mb",
                "CMMVC5860E The action failed because there were not enough extents in the "
                "managed disk group.")
    shell.ok("svctask mkvdisk -name b -mdiskgrp pool1 -iogrp 0 -size 36 -unit mb")
    pool1 = shell.detail("svcinfo lsmdiskgrp -bytes -delim ! pool1")
    assert (pool1["free_capacity"], pool1["used_capacity"]) == ("0", str(100 * MiB))
    shell.ok("svctask mkvdisk -name c -mdiskgrp pool2 -iogrp 0 -size 40 -unit mb")
    shell.fails("svctask migratevdisk -mdiskgrp pool2 -vdisk a", "CMMVC5860E")
    shell.ok("svctask migratevdisk -mdiskgrp pool2 -vdisk b")  # reserved in pool2 while moving
    assert shell.detail("svcinfo lsmdiskgrp -bytes -delim ! pool2")["free_capacity"] \
        == str(24 * MiB)
    shell.fails("svctask mkvdisk -name d -mdiskgrp pool2 -iogrp 0 -size 25 -unit mb",
                "CMMVC5860E")
    wait_for(lambda: shell.progress("1") is None)  # b's move
    assert shell.detail("svcinfo lsmdiskgrp -bytes -delim ! pool1")["free_capacity"] \
        == str(36 * MiB)
    shell.close()


def test_migratevdisk_moves_the_data_in_the_background(array, shell):
    size = 80 * MiB
    data = [(0, 16 * MiB), (32 * MiB, 48 * MiB)]  # 64 MiB of data; holes at 16M and the end
    shell.ok(f"svctask mkvdisk -name v1 -mdiskgrp pool1 -iogrp 0 -size {size} -unit b")
    shell.ok("svctask mkvdisk -name other -mdiskgrp pool1 -iogrp 0 -size 32 -unit mb")
    source = data_path(shell, "v1")
    write_random(source, data)
    before = sha256(source)

    shell.fails("svctask migratevdisk -mdiskgrp pool1 -vdisk v1", "CMMVC6096E")
    shell.fails("svctask migratevdisk -mdiskgrp nopool -vdisk v1", "CMMVC5754E")
    shell.fails("svctask migratevdisk -mdiskgrp pool2 -vdisk nosuch", "CMMVC5753E")
    assert shell.ok("svctask migratevdisk -vdisk v1 -threads 2 -mdiskgrp pool2") == ""
    started = time.monotonic()
    shell.fails("svctask migratevdisk -mdiskgrp pool2 -vdisk v1", "CMMVC5859E")
    shell.fails("svctask rmvdisk -force v1", "CMMVC5840E")

    block = shell.ok("svcinfo lsmigrate -delim !")
    assert [line.split("!")[0] for line in block.splitlines()] == [
        "migrate_type", "progress", "migrate_source_vdisk_index", "migrate_target_mdisk_grp",
        "max_thread_count", "migrate_source_vdisk_copy_id"]
    info = shell.detail("svcinfo lsmigrate -delim !")
    assert {k: v for k, v in info.items() if k != "progress"} == {
        "migrate_type": "MDisk_Group_Migration", "migrate_source_vdisk_index": "0",
        "migrate_target_mdisk_grp": "1", "max_thread_count": "2",
        "migrate_source_vdisk_copy_id": "0"}
    # While it moves, the vdisk is still in its source pool.
    assert shell.detail("svcinfo lsvdisk -delim ! v1")["mdisk_grp_name"] == "pool1"
    # A second move at once: blocks separated by a blank line.
    shell.ok("svctask migratevdisk -mdiskgrp pool2 -vdisk other")
    both = shell.ok("svcinfo lsmigrate")
    assert "\n\nmigrate_type MDisk_Group_Migration\n" in both
    assert [b.splitlines()[2] for b in both.split("\n\n")] == [
        "migrate_source_vdisk_index 0", "migrate_source_vdisk_index 1"]

    seen = progress_until_done(shell)
    assert shell.ok("svcinfo lsmigrate -delim !") == ""
    elapsed = time.monotonic() - started
    # 80 MiB at 32 MiB/s: never faster (2.5 s); slower only as much as a loaded
    # machine makes it, and it ends.
    assert 2.0 < elapsed < 60, elapsed
    changes = [p for i, p in enumerate(seen) if i == 0 or p != seen[i - 1]]
    assert changes == sorted(set(changes)) and len(changes) >= 5, seen
    assert all(0 <= p < 100 for p in seen)

    detail = shell.detail("svcinfo lsvdisk -delim ! -bytes v1")
    assert (detail["mdisk_grp_name"], detail["capacity"]) == ("pool2", str(size))
    target = detail["sim_data_path"]
    assert target == os.path.join(array.data_dir, "pool2", "v1")
    assert not os.path.exists(source)
    assert sha256(target) == before
    # Holes stay holes: only the 64 MiB of data is allocated.
    assert os.stat(target).st_blocks * 512 <= 64 * MiB + MiB
    fd = os.open(target, os.O_RDONLY)
    try:
        assert os.lseek(fd, 0, os.SEEK_HOLE) == 16 * MiB
        assert os.lseek(fd, 16 * MiB, os.SEEK_DATA) == 32 * MiB
    finally:
        os.close(fd)
    assert sorted(os.listdir(os.path.join(array.data_dir, "pool2"))) == ["other", "v1"]


def test_kill_9_mid_move_then_restart(make_array):
    # 16 MiB/s: the 96 MiB move lasts 6 s, so the kill at 45% lands in its middle
    # (3 s before its end); it saves its position every second (a sixth of the
    # move). Restarted, the array moves 1 KiB/s: the resumed move takes one
    # 1 MiB step at once and then waits, so it still moves when it is asked,
    # however long the restart took.
    array = make_array(migrate_rate="16M")
    shell = Shell(array)
    size = 96 * MiB
    shell.ok(f"svctask mkvdisk -name v1 -mdiskgrp pool1 -iogrp 0 -size {size} -unit b")
    shell.ok("svctask mkvdiskhostmap -host h1 v1")
    source = data_path(shell, "v1")
    write_random(source, [(0, size)])
    before = sha256(source)
    shell.ok("svctask migratevdisk -mdiskgrp pool2 -vdisk v1")
    wait_for(lambda: shell.progress() >= 45)
    shell.close()
    array.kill()  # SIGKILL (and waited for): no chance to save anything
    array.migrate_rate = "1K"
    array.start()  # the same data dir, the same port

    again = Shell(array)
    try:
        # The move goes on from its last durable position (saved every second).
        resumed = again.progress()
        assert resumed is not None and resumed >= 25, resumed
        assert again.detail("svcinfo lsvdisk -delim ! v1")["mdisk_grp_name"] == "pool1"
    finally:
        again.close()
    array.kill()  # once more, to finish the move at full speed
    array.migrate_rate = "64M"
    array.start()

    again = Shell(array)
    try:
        seen = progress_until_done(again)
        assert seen == sorted(seen)
        assert data_path(again, "v1") == os.path.join(array.data_dir, "pool2", "v1")
        assert sha256(data_path(again, "v1")) == before
        assert again.ok("svcinfo lsvdiskhostmap -delim ! v1").splitlines()[1].split("!")[4] \
            == "h1"
        assert os.listdir(os.path.join(array.data_dir, "pool1")) == []
    finally:
        again.close()


def test_fault_injection(make_array):
    array = make_array(extra=("--fail", "migratevdisk=CMMVC5859E",
                              "--fail", "lsmdiskgrp=CMMVC9999E"))
    shell = Shell(array)
    shell.ok("svctask mkvdisk -name v1 -mdiskgrp pool1 -iogrp 0 -size 1 -unit mb")
    shell.fails("svctask migratevdisk -mdiskgrp pool2 -vdisk v1", "CMMVC5859E")
    shell.fails("svcinfo lsmdiskgrp -delim !", "CMMVC9999E")
    assert shell.ok("svcinfo lsmigrate") == ""
    shell.close()


def test_in_process_and_bad_options(tmp_path, capsys):
    from types import SimpleNamespace

    from volmigrate.drivers.simulators import storwize as simulator
    sim = simulator.StorwizeSimulator(str(tmp_path / "array"), ["gold"], port=0,
                                      login="admin", password="secret")
    sim.start()
    try:
        shell = Shell(SimpleNamespace(port=sim.port, LOGIN="admin", PASSWORD="secret"))
        assert shell.ok("svcinfo lsmdiskgrp -delim !").splitlines()[1].split("!")[1] == "gold"
        shell.close()
    finally:
        sim.stop()
    data_dir = str(tmp_path / "bad")
    for argv, message in [(["--fail", "migratevdisk"], "expected COMMAND=CODE"),
                          (["--fail", "frobnicate=CMMVC5859E"], "has no command frobnicate"),
                          (["--pools", "../up"], "invalid pool name"),
                          (["--listen", "127.0.0.1"], "expected HOST:PORT")]:
        assert simulator.main(["--data-dir", data_dir, *argv]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        simulator.main(["--data-dir", data_dir, "--pool-capacity", "lots"])
    assert simulator.parse_size("16G") == 16 * 1024 ** 3
    assert simulator.parse_size("256MiB") == 256 * MiB


def test_restart_makes_the_files_agree_with_the_state(tmp_path):
    """A kill between the steps of a command or of a move's switch leaves nothing wrong."""
    from volmigrate.drivers.simulators.storwize import MOVING_SUFFIX, Array
    data_dir = str(tmp_path / "array")
    array = Array(data_dir, ["pool1", "pool2"], 1024 * MiB, MiB, {})
    array.run("svctask mkvdisk -name v1 -mdiskgrp pool1 -size 8 -unit mb")
    array.run("svctask mkvdisk -name v2 -mdiskgrp pool1 -size 8 -unit mb")
    array.run("svctask migratevdisk -mdiskgrp pool2 -vdisk v1")  # 1 MiB/s: still running
    array.run("svctask migratevdisk -mdiskgrp pool2 -vdisk v2")
    array.stop()
    write_random(array.path("pool1", "v1"), [(0, 8 * MiB)])
    before = sha256(array.path("pool1", "v1"))
    # v1: killed after its complete copy was renamed into place, before the switch was saved.
    os.replace(array.path("pool1", "v1"), array.path("pool2", "v1", MOVING_SUFFIX))
    with open(array.path("pool1", "v1"), "wb") as f:
        f.truncate(8 * MiB)  # the source, still there
    os.rename(array.path("pool2", "v1", MOVING_SUFFIX), array.path("pool2", "v1"))
    # v2: its copy lost; and a file no vdisk owns (a mkvdisk killed before its save).
    os.unlink(array.path("pool2", "v2", MOVING_SUFFIX))
    open(array.path("pool2", "stray"), "wb").close()

    again = Array(data_dir, ["pool1", "pool2"], 1024 * MiB, 0, {})
    assert again.run("svcinfo lsvdisk -delim ! v1").count("mdisk_grp_name!pool2") == 1
    assert sha256(again.path("pool2", "v1")) == before
    assert sorted(os.listdir(os.path.join(data_dir, "pool1"))) == ["v2"]
    assert sorted(os.listdir(os.path.join(data_dir, "pool2"))) == ["v1", "v2" + MOVING_SUFFIX]
    assert "migrate_source_vdisk_index 1\n" in again.run("svcinfo lsmigrate")
    again.start_movers()  # no rate limit: at once
    wait_for(lambda: again.run("svcinfo lsmigrate") == "")
    assert sorted(os.listdir(os.path.join(data_dir, "pool2"))) == ["v1", "v2"]
    again.stop()


# -- the driver -----------------------------------------------------------------
def make_driver(array, tmp_path, **overrides) -> StorwizeDriver:
    """The driver of backend section [svc], configured as the engine would."""
    conf = cfg.ConfigOpts()
    conf.register_opts(StorwizeDriver.options, group="svc")
    conf([], project="volmigrate-test", default_config_files=[])
    options = dict(san_ip="127.0.0.1", san_ssh_port=array.port, san_login=array.LOGIN,
                   san_password=array.PASSWORD, storwize_svc_volpool_name=["pool1", "pool2"],
                   ssh_conn_timeout=5, storwize_ssh_retries=2)
    options.update(overrides)
    for name, value in options.items():
        conf.set_override(name, value, group="svc")
    driver = StorwizeDriver(conf.svc, "svc", str(tmp_path))
    driver.do_setup()
    return driver


def volume(size: int = 8 * MiB, pool: str | None = "pool1", **extra) -> dict:
    import uuid
    host = "node1@svc" + (f"#{pool}" if pool else "")
    return dict({"id": str(uuid.uuid4()), "name_id": None, "size": size, "host": host,
                 "provider_location": None}, **extra)


def test_driver_options_do_not_clash():
    from volmigrate.drivers.local import LocalDriver
    from volmigrate.engine.opts import list_opts
    names = {o.dest for o in StorwizeDriver.options}
    assert {"san_ip", "san_ssh_port", "san_login", "san_password", "storwize_svc_volpool_name",
            "ssh_conn_timeout", "ssh_min_pool_conn", "ssh_max_pool_conn",
            "storwize_ssh_retries", "storwize_connector", "storwize_host_name"} == names
    assert not names & {o.dest for o in LocalDriver.options}
    engine = {o.dest for _, opts in list_opts() for o in opts} - names
    assert not names & engine


def test_driver_setup_and_stats(array, tmp_path):
    driver = make_driver(array, tmp_path)
    assert driver.pools() == ["pool1", "pool2"] and driver.default_pool == "pool1"
    stats = driver.get_volume_stats()
    assert stats["migration_progress_report"] is True
    assert stats["pools"] == [
        {"pool_name": "pool1", "total_capacity_gb": 16.0, "free_capacity_gb": 16.0},
        {"pool_name": "pool2", "total_capacity_gb": 16.0, "free_capacity_gb": 16.0}]
    driver.create_volume(volume(size=1024 ** 3, pool="pool2"))
    assert driver.get_volume_stats()["pools"][1]["free_capacity_gb"] == 15.0

    with pytest.raises(DriverConfigError, match="has no pool nope, other"):
        make_driver(array, tmp_path, storwize_svc_volpool_name=["pool1", "nope", "other"])
    with pytest.raises(DriverConfigError, match="refused the login of superuser"):
        make_driver(array, tmp_path, san_password="wrong")
    with pytest.raises(DriverConfigError, match="san_ip is not set"):
        make_driver(array, tmp_path, san_ip=None)


def test_driver_volumes_and_connections(array, shell, tmp_path):
    driver = make_driver(array, tmp_path, storwize_host_name="node1-host")
    vol = volume(size=8 * MiB, pool=None)  # no #pool: the default pool
    name = f"volume-{vol['id']}"
    assert driver.create_volume(vol) == {"provider_location": f"pool1/{name}"}
    assert driver.create_volume(vol) == {"provider_location": f"pool1/{name}"}  # re-run
    with pytest.raises(DriverError, match="already exists"):
        driver.create_volume(dict(vol, size=16 * MiB))
    assert shell.detail(f"svcinfo lsvdisk -bytes -delim ! {name}")["capacity"] == str(8 * MiB)
    # name_id names the vdisk after a migration.
    moved = volume(pool="pool2", name_id=vol["id"])
    assert driver.volume_pool(moved) == "pool1"

    assert driver.access_kind() == "path"
    connection = driver.connect_volume(vol, writable=True)
    assert connection == {"access": "path", "vdisk": name,
                          "path": os.path.join(array.data_dir, "pool1", name)}
    assert driver.connect_volume(vol, writable=True) == connection  # already mapped: fine
    hosts = shell.ok(f"svcinfo lsvdiskhostmap -delim ! {name}").splitlines()[1:]
    assert [h.split("!")[4] for h in hosts] == ["node1-host"]
    assert driver.connection_valid(vol, connection)
    write_random(connection["path"], [(0, 8 * MiB)])
    driver.disconnect_volume(vol, connection)
    driver.disconnect_volume(vol, connection)  # twice: fine
    assert shell.ok(f"svcinfo lsvdiskhostmap -delim ! {name}").splitlines()[1:] == []

    driver.connect_volume(vol, writable=False)
    driver.delete_volume(vol)  # mapped: rmvdisk -force
    driver.delete_volume(vol)  # gone already: fine
    assert not driver.connection_valid(vol, connection)
    driver.disconnect_volume(vol, connection)  # the vdisk is gone: fine
    with pytest.raises(DriverError, match="does not exist"):
        driver.connect_volume(vol, writable=True)

    # The array's refusals reach the caller with their code, and are not retried.
    with pytest.raises(StorwizeCommandError) as err:
        driver.create_volume(volume(pool="nopool"))
    assert err.value.code == "CMMVC5754E"
    assert str(err.value).startswith("mkvdisk failed: CMMVC5754E The specified object")
    with pytest.raises(StorwizeCommandError, match="mkvdisk failed: CMMVC5860E") as err:
        driver.create_volume(volume(size=17 * 1024 ** 3))
    assert err.value.code == "CMMVC5860E"


def test_driver_assisted_move(array, shell, tmp_path):
    driver = make_driver(array, tmp_path)
    vol = volume(size=64 * MiB, pool="pool1")
    name = f"volume-{vol['id']}"
    driver.create_volume(vol)
    path = driver.connect_volume(vol, writable=True)["path"]
    write_random(path, [(0, 64 * MiB)])
    before = sha256(path)

    assert driver.can_migrate_within_backend(vol, "pool2")
    assert not driver.can_migrate_within_backend(vol, "pool1")  # where it is
    assert not driver.can_migrate_within_backend(vol, "elsewhere")  # not ours
    assert driver.get_migration_progress(vol) is None

    driver.migrate_within_backend(vol, "pool2")
    driver.migrate_within_backend(vol, "pool2")  # a resumed flow: the same move, not another
    assert shell.ok("svcinfo lsmigrate").count("migrate_type") == 1
    with pytest.raises(DriverError, match="to another pool"):
        driver.migrate_within_backend(vol, "pool1")
    assert driver.volume_pool(vol) == "pool1"  # while it moves

    reports = []
    while (progress := driver.get_migration_progress(vol)) is not None:
        reports.append(progress)
        time.sleep(0.1)
    assert len(reports) >= 5
    assert all(total == 64 * MiB and 0 <= moved < total for moved, total in reports)
    assert [m for m, _ in reports] == sorted(m for m, _ in reports)
    assert reports[-1][0] > reports[0][0]

    assert driver.volume_pool(vol) == "pool2"
    driver.migrate_within_backend(vol, "pool2")  # done already: nothing to do
    assert shell.ok("svcinfo lsmigrate") == ""
    moved = dict(vol, host="node1@svc#pool2")
    connection = driver.connect_volume(moved, writable=False)
    assert connection["path"] == os.path.join(array.data_dir, "pool2", name)
    assert sha256(connection["path"]) == before
    driver.disconnect_volume(moved, connection)
    with pytest.raises(DriverError, match="does not exist"):
        driver.volume_pool(volume())


def test_driver_retries_while_the_array_restarts(array, tmp_path, caplog):
    # 40 attempts wait over a minute in all: far longer than a restart of the
    # array takes on a loaded machine (they are spent only while it is down).
    driver = make_driver(array, tmp_path, storwize_ssh_retries=40)
    vol = volume()
    driver.create_volume(vol)
    array.kill()
    result: dict = {}

    def call():
        try:
            result["pool"] = driver.volume_pool(vol)
        except Exception as exc:  # reported below
            result["error"] = exc

    caplog.clear()
    caller = threading.Thread(target=call)
    caller.start()
    # A few attempts fail meanwhile.
    wait_for(lambda: sum("trying again" in r.getMessage() for r in caplog.records) >= 2)
    assert caller.is_alive()
    array.start()  # the same port: the pooled connection is dead, a new one works
    caller.join(timeout=PATIENCE)
    assert result == {"pool": "pool1"}

    array.kill()  # gone for good
    started = time.monotonic()
    with pytest.raises(DriverError, match=f"cannot reach the Storwize array at "
                                          f"127.0.0.1:{array.port}") as err:
        make_driver_like(driver).volume_pool(vol)
    assert not isinstance(err.value, StorwizeCommandError)
    assert time.monotonic() - started < 10


def make_driver_like(driver: StorwizeDriver) -> StorwizeDriver:
    """The same backend with storwize_ssh_retries = 2, not set up (the array is down)."""
    conf = cfg.ConfigOpts()
    conf.register_opts(StorwizeDriver.options, group="svc")
    conf([], project="volmigrate-test", default_config_files=[])
    for opt in StorwizeDriver.options:
        conf.set_override(opt.dest, getattr(driver.configuration, opt.dest), group="svc")
    conf.set_override("storwize_ssh_retries", 2, group="svc")
    return StorwizeDriver(conf.svc, "svc", driver.state_path)
