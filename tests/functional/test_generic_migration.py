"""A generic migration moves the data byte for byte, and the records follow it.

Between local paths the copy is the kernel's (copy_method = auto, the default,
or kernel) or dd's (copy_method = dd); where a backend gives only a file-like
object it is file I/O. The tests run each of them end to end and check which
one ran: dd runs exactly when it is asked for.
"""

import os
import subprocess

import pytest

from vmtest import (HAS_LOOP, PATIENCE, MiB, fill_random, host, notifications, sha256_of,
                    volume_files)
from volmigrate.engine import ACCEPTED_MESSAGE

SIZE = 16 * MiB + 512  # not a multiple of dd's block size: the tail must come too


@pytest.fixture
def dd_runs(monkeypatch):
    """The argument list of every dd this process starts (each still runs)."""
    runs = []

    class Spy(subprocess.Popen):
        def __init__(self, args, *more, **kwargs):
            if isinstance(args, (list, tuple)) and args and \
                    os.path.basename(str(args[0])) == "dd":
                runs.append([str(a) for a in args])
            super().__init__(args, *more, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Spy)
    return runs


def _assert_copied_by(dd_runs, method, dest_path):
    """dd ran, writing the destination, when it was asked for; else never."""
    if method == "dd":
        assert dd_runs, "copy_method = dd, but no dd ran"
        assert all(f"of={dest_path}" in run for run in dd_runs), dd_runs
    else:
        assert dd_runs == [], f"copy_method = {method}, but dd ran: {dd_runs}"


def _migrate_and_check(svc, tmp_path, lock, case):
    volume = svc.create_volume(SIZE, host("a"), name="data")
    before = fill_random(volume["provider_location"], SIZE)

    response = svc.migrate_volume(volume["id"], host("b"), lock_volume=lock)
    assert response.accepted, response.message
    assert response.message == ACCEPTED_MESSAGE
    migration = svc.wait(response.migration_id, timeout=PATIENCE)

    assert migration["state"] == "success", migration["error"]
    assert migration["case"] == case
    after = svc.get_volume(volume["id"])
    assert after["host"] == f"{host('b')}#b"
    assert after["name_id"] == migration["id"]  # data lives in the object made for it
    assert after["status"] == "available"
    assert after["migration_status"] == "success"
    assert after["provider_location"].startswith(str(tmp_path / "state" / "volumes" / "b"))
    assert sha256_of(after["provider_location"]) == before
    assert os.path.getsize(after["provider_location"]) == SIZE
    # Nothing left behind: no hidden volume, no file on the source backend.
    assert [v["id"] for v in svc.list_volumes(include_hidden=True)] == [volume["id"]]
    assert volume_files(tmp_path, "a") == []
    assert volume_files(tmp_path, "b") == [f"volume-{migration['id']}"]
    events = [n["event_type"] for n in notifications()]
    assert events[0] == "volume.migration.start" and events[-1] == "volume.migration.end"
    assert "volume.migration.error" not in events
    return migration


# (copy_method, local_access of both backends, the case it makes)
FILE_COPIES = [
    pytest.param("kernel", "path", "host-copy-paths", id="kernel"),
    pytest.param("dd", "path", "host-copy-paths", id="dd"),
    pytest.param("auto", "stream", "host-copy-file-io", id="file-io"),
]


@pytest.mark.parametrize("lock", [False, True], ids=["unlocked", "locked"])
@pytest.mark.parametrize("method,access,case", FILE_COPIES)
def test_migration_between_files(make_service, tmp_path, dd_runs, method, access, case,
                                 lock):
    svc = make_service(copy_method=method, backends={"a": {"local_access": access},
                                                     "b": {"local_access": access}})
    migration = _migrate_and_check(svc, tmp_path, lock, case)
    _assert_copied_by(dd_runs, method,
                      str(tmp_path / "state" / "volumes" / "b" / f"volume-{migration['id']}"))


def _loops_over_files_in(folder) -> list[str]:
    """The loop devices (name and backing file) over files under `folder`: this
    test's volumes, whatever loop devices other tests running beside it hold."""
    listing = subprocess.run(["losetup", "--list", "--noheadings", "--output",
                              "NAME,BACK-FILE"], capture_output=True, text=True,
                             check=True).stdout
    return sorted(line for line in listing.splitlines() if f"{folder}{os.sep}" in line)


@pytest.mark.skipif(not HAS_LOOP, reason="loop devices need root and /dev/loop-control")
@pytest.mark.parametrize("method", ["kernel", "dd"])
def test_migration_between_loop_block_devices(make_service, tmp_path, dd_runs, method):
    svc = make_service(copy_method=method, backends={"a": {"local_access": "block"},
                                                     "b": {"local_access": "block"}})
    loops_before = _loops_over_files_in(tmp_path)
    _migrate_and_check(svc, tmp_path, True, "host-copy-paths")
    assert _loops_over_files_in(tmp_path) == loops_before  # every loop device released
    if method == "dd":  # dd wrote a loop device, not the file behind it
        assert dd_runs and all(any(a.startswith("of=/dev/loop") for a in run)
                               for run in dd_runs), dd_runs
    else:
        assert dd_runs == []


def test_file_io_migration_when_a_side_gives_only_a_file_object(make_service, tmp_path):
    svc = make_service(backends={"a": {}, "b": {"local_access": "stream"}})
    _migrate_and_check(svc, tmp_path, False, "host-copy-file-io")


def test_sparse_source_stays_sparse_on_the_destination(make_service, tmp_path):
    svc = make_service()
    volume = svc.create_volume(256 * MiB, host("a"))
    with open(volume["provider_location"], "r+b") as f:
        f.seek(100 * MiB)
        f.write(os.urandom(MiB))
    before = sha256_of(volume["provider_location"])
    migration = svc.wait(svc.migrate_volume(volume["id"], host("b")).migration_id, PATIENCE)
    assert migration["state"] == "success"
    path = svc.get_volume(volume["id"])["provider_location"]
    assert sha256_of(path) == before
    assert os.stat(path).st_blocks * 512 <= 2 * MiB


def test_migrating_back_and_forth_keeps_the_data(make_service, tmp_path):
    svc = make_service()
    volume = svc.create_volume(8 * MiB, host("a"))
    before = fill_random(volume["provider_location"], 8 * MiB)
    for dest in ("b", "a", "b"):
        response = svc.migrate_volume(volume["id"], host(dest))
        assert svc.wait(response.migration_id, PATIENCE)["state"] == "success"
    final = svc.get_volume(volume["id"])
    assert final["host"] == f"{host('b')}#b"
    assert sha256_of(final["provider_location"]) == before
    assert volume_files(tmp_path, "a") == []
    assert len(volume_files(tmp_path, "b")) == 1
    assert len(svc.list_migrations(volume["id"])) == 3
