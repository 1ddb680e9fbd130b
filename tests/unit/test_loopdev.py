"""The loop-device helper the local and LVM drivers share (drivers/loopdev.py)."""

import json
import subprocess

import pytest

from vmtest import HAS_LOOP, MiB
from volmigrate.drivers import loopdev
from volmigrate.drivers.exceptions import DriverError


class _Recorder:
    """Stands in for subprocess.run: records each command, answers with `stdout`."""

    def __init__(self, stdout: str = "", returncode: int = 0, stderr: str = "") -> None:
        self.commands: list[list[str]] = []
        self.answer = (stdout, returncode, stderr)

    def __call__(self, command, **kwargs):
        assert "shell" not in kwargs and isinstance(command, list)
        self.commands.append(command)
        stdout, returncode, stderr = self.answer
        return subprocess.CompletedProcess(command, returncode, stdout, stderr)


@pytest.fixture
def recorder(monkeypatch):
    rec = _Recorder("/dev/loop7\n")
    monkeypatch.setattr(loopdev.subprocess, "run", rec)
    return rec


def test_attach_builds_the_command_the_caller_asked_for(recorder):
    assert loopdev.attach("/var/v file") == "/dev/loop7"
    assert loopdev.attach("/dev/sdb", read_only=True, direct_io=True, offset=1048576,
                          sizelimit=4 * MiB, prefix=["sudo", "-n"]) == "/dev/loop7"
    assert recorder.commands == [
        ["losetup", "--find", "--show", "/var/v file"],
        ["sudo", "-n", "losetup", "--find", "--show", "--direct-io=on", "--offset",
         "1048576", "--sizelimit", str(4 * MiB), "--read-only", "/dev/sdb"]]


def test_detach_goes_through_the_prefix(recorder):
    loopdev.detach("/dev/loop7", prefix=["sudo"])
    assert recorder.commands == [["sudo", "losetup", "--detach", "/dev/loop7"]]


def test_find_reads_losetup_json_of_any_version(monkeypatch):
    listing = {"loopdevices": [
        {"name": "/dev/loop0", "back-file": "/pv", "offset": 4096, "sizelimit": 8192,
         "ro": True},
        # util-linux before 2.35: numbers and flags as strings
        {"name": "/dev/loop1", "back-file": "/pv (deleted)", "offset": "0",
         "sizelimit": "0", "ro": "0"}]}
    rec = _Recorder(json.dumps(listing))
    monkeypatch.setattr(loopdev.subprocess, "run", rec)
    assert loopdev.find("/pv", prefix=["sudo"]) == [
        loopdev.LoopDevice("/dev/loop0", "/pv", 4096, 8192, True, False),
        loopdev.LoopDevice("/dev/loop1", "/pv", 0, 0, False, True)]
    assert rec.commands[0][:2] == ["sudo", "losetup"]
    assert rec.commands[0][-2:] == ["--associated", "/pv"]
    rec.answer = ("", 0, "")  # some versions print nothing when none is attached
    assert loopdev.find("/pv") == []
    rec.answer = ("not json", 0, "")
    with pytest.raises(DriverError, match="cannot parse the output of losetup"):
        loopdev.find("/pv")


def test_failures_say_the_command_and_its_message(monkeypatch):
    monkeypatch.setattr(loopdev.subprocess, "run",
                        _Recorder("", 1, "losetup: /x: failed to set up loop device\n"))
    with pytest.raises(DriverError, match=r"losetup --find --show /x failed \(1\): "
                                          r"losetup: /x: failed to set up loop device$"):
        loopdev.attach("/x")
    monkeypatch.undo()  # a real run, of a helper that is not there
    with pytest.raises(DriverError, match="cannot run no-such-helper-here"):
        loopdev.detach("/dev/loop7", prefix=["no-such-helper-here"])


def test_maps_compares_resolved_paths_and_the_range(tmp_path):
    target = tmp_path / "pv"
    target.write_bytes(b"")
    (tmp_path / "link").symlink_to(target)
    loop = loopdev.LoopDevice("/dev/loop3", str(tmp_path / "link"), 512, 1024)
    assert loop.maps(str(target), 512, 1024)
    assert not loop.maps(str(target)) and not loop.maps(str(tmp_path / "other"), 512, 1024)


def test_info_of_what_is_not_a_loop_device():
    assert loopdev.info("/dev/null") is None
    assert loopdev.info("/dev/loop-that-does-not-exist") is None


@pytest.mark.skipif(not HAS_LOOP, reason="loop devices need root and /dev/loop-control")
def test_attach_find_info_detach_round_trip(tmp_path):
    backing = tmp_path / "backing file"  # a space: never split by a shell
    with open(backing, "wb") as f:
        f.truncate(4 * MiB)
    device = loopdev.attach(str(backing), read_only=True, offset=MiB, sizelimit=2 * MiB)
    try:
        expected = loopdev.LoopDevice(device, str(backing), MiB, 2 * MiB, True, False)
        assert loopdev.find(str(backing)) == [expected]
        assert loopdev.info(device) == expected
        backing.unlink()  # the device keeps the file: says so, under the file's name
        assert loopdev.info(device) == loopdev.LoopDevice(device, str(backing), MiB,
                                                          2 * MiB, True, True)
    finally:
        loopdev.detach(device)
    assert loopdev.info(device) is None
