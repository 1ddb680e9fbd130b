"""Never report success over lost data (issue 13, items 1-3).

A hostile administrator removes or replaces the destination while it is
being written, truncates the source, or puts a symbolic link where a volume's
file was. Whatever the copy method and access mode, the migration must end
in `error` with the source intact and the volume still on it; the source is
deleted only once the destination has been re-opened through its driver and
proven to be the object that was written.

The copies are held on purpose (the `copy_gate` fixture) after their first
MiB: the test strikes while a copy is surely half way, then lets it go on at
full speed.
"""

import json
import os
import subprocess
import sys

import pytest

from vmtest import (HAS_LOOP, HOLDABLE, IS_ROOT, PATIENCE, MiB, fill_random, host,
                    notifications, sha256_of, volume_files, write_config)

SIZE = 4 * MiB

# (access of both backends, copy_method, migration_verify)
MODES = [
    pytest.param("path", "kernel", "none", id="path-kernel"),
    pytest.param("path", "kernel", "checksum", id="path-kernel-checksum"),
    pytest.param("path", "dd", "none", id="path-dd"),
    pytest.param("stream", "auto", "none", id="stream-fileio"),
    pytest.param("stream", "auto", "checksum", id="stream-fileio-checksum"),
    pytest.param("block", "kernel", "none", id="block-kernel",
                 marks=pytest.mark.skipif(not HAS_LOOP, reason="loop devices need root")),
    pytest.param("block", "dd", "none", id="block-dd",
                 marks=pytest.mark.skipif(not HAS_LOOP, reason="loop devices need root")),
    pytest.param("block", "kernel", "checksum", id="block-kernel-checksum",
                 marks=pytest.mark.skipif(not HAS_LOOP, reason="loop devices need root")),
]


def _service(make_service, access="path", method="auto", verify="none", backends=None):
    backends = backends or {"a": {"local_access": access}, "b": {"local_access": access}}
    return make_service(backends=backends, copy_method=method, migration_verify=verify,
                        **HOLDABLE)


def _dest_path(tmp_path, migration_id: str) -> str:
    return str(tmp_path / "state" / "volumes" / "b" / f"volume-{migration_id}")


def _held_migration(svc, gate, lock_volume: bool = False):
    """A volume of random data whose migration holds its copy after the first MiB:
    (volume, sha256 of its data, the migration response). `gate.release()` lets
    the copy go on."""
    volume = svc.create_volume(SIZE, host("a"))
    before = fill_random(volume["provider_location"], SIZE)
    response = gate.migrate(svc, volume["id"], host("b"), lock_volume=lock_volume)
    assert 0 < svc.get_migration_progress(volume["id"])["bytes_copied"] < SIZE
    return volume, before, response


def _strike_then_release(svc, gate, response) -> dict:
    """What the test did to the held copy is done: let it go on, to its end."""
    gate.release(response.migration_id)
    return svc.wait(response.migration_id, PATIENCE)


def _assert_source_kept(svc, tmp_path, volume, before, migration, *phrases):
    assert migration["state"] == "error", migration
    for phrase in phrases:
        assert phrase in migration["error"], migration["error"]
    after = svc.get_volume(volume["id"])
    assert after["migration_status"] == "error"
    assert after["status"] == "available"
    assert after["host"] == volume["host"] and after["name_id"] is None
    assert after["provider_location"] == volume["provider_location"]
    assert sha256_of(after["provider_location"]) == before
    assert [v["id"] for v in svc.list_volumes(include_hidden=True)] == [volume["id"]]
    assert volume_files(tmp_path, "b") == []
    errors = notifications("volume.migration.error")
    assert len(errors) == 1 and not notifications("volume.migration.end")


@pytest.mark.parametrize("access,method,verify", MODES)
def test_destination_removed_during_the_copy(make_service, copy_gate, tmp_path, access,
                                             method, verify):
    svc = _service(make_service, access, method, verify)
    volume, before, response = _held_migration(svc, copy_gate, lock_volume=True)
    os.unlink(_dest_path(tmp_path, response.migration_id))  # a cleanup job
    migration = _strike_then_release(svc, copy_gate, response)
    _assert_source_kept(svc, tmp_path, volume, before, migration)
    assert ("removed during the copy" in migration["error"]
            or "dd exited" in migration["error"]), migration["error"]


def test_destination_replaced_during_the_copy(make_service, copy_gate, tmp_path):
    """Removed, and a file of the same name and size made in its place."""
    svc = _service(make_service, method="kernel")
    volume, before, response = _held_migration(svc, copy_gate)
    dest = _dest_path(tmp_path, response.migration_id)
    os.unlink(dest)
    with open(dest, "wb") as f:
        f.truncate(SIZE)
    migration = _strike_then_release(svc, copy_gate, response)
    _assert_source_kept(svc, tmp_path, volume, before, migration,
                        "is not the object that was written", "the source is kept")


@pytest.mark.parametrize("method", ["kernel", "dd"])
def test_destination_directory_removed_during_the_copy(make_service, copy_gate, tmp_path,
                                                       method):
    svc = _service(make_service, method=method)
    volume, before, response = _held_migration(svc, copy_gate)
    dest_dir = tmp_path / "state" / "volumes" / "b"
    subprocess.run(["rm", "-rf", str(dest_dir)], check=True)
    migration = _strike_then_release(svc, copy_gate, response)
    assert migration["state"] == "error", migration
    after = svc.get_volume(volume["id"])
    assert after["host"] == volume["host"] and after["migration_status"] == "error"
    assert sha256_of(after["provider_location"]) == before


@pytest.mark.skipif(not IS_ROOT, reason="mounting a tmpfs needs root")
@pytest.mark.parametrize("method", ["kernel", "dd"])
def test_read_only_file_system_mounted_over_the_destination(make_service, copy_gate, tmp_path,
                                                           method):
    svc = _service(make_service, method=method)
    volume, before, response = _held_migration(svc, copy_gate)
    dest_dir = str(tmp_path / "state" / "volumes" / "b")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1M", "tmpfs", dest_dir],
                   check=True)
    try:
        migration = _strike_then_release(svc, copy_gate, response)
        assert migration["state"] == "error", migration
        after = svc.get_volume(volume["id"])
        assert after["host"] == volume["host"] and after["migration_status"] == "error"
        assert sha256_of(after["provider_location"]) == before
    finally:
        subprocess.run(["umount", dest_dir], check=True)


def test_destination_removed_while_no_process_ran_it(tmp_path):
    """kill -9 right after the copy; the destination goes; `recover` must not finish
    the migration over it (the proof runs in the resumed flow, not the dead one)."""
    cli = os.path.join(os.path.dirname(sys.executable), "volmigrate")
    conf = write_config(tmp_path)
    env = dict(os.environ, VOLMIGRATE_TEST_KILL_AT="copy-data:SUCCESS")
    created = subprocess.run([cli, "--config-file", conf, "create", "--size", "4M",
                              "--host", host("a"), "--format", "json"],
                             capture_output=True, text=True, check=True)
    volume = json.loads(created.stdout)
    before = fill_random(volume["provider_location"], SIZE)
    killed = subprocess.run([cli, "--config-file", conf, "migrate", volume["id"], host("b"),
                             "--lock-volume"], capture_output=True, text=True, env=env,
                            timeout=PATIENCE)
    assert killed.returncode == -9, killed.stderr
    leftovers = volume_files(tmp_path, "b")
    assert len(leftovers) == 1
    os.unlink(tmp_path / "state" / "volumes" / "b" / leftovers[0])
    subprocess.run([cli, "--config-file", conf, "recover"], capture_output=True, text=True,
                   timeout=PATIENCE)
    shown = json.loads(subprocess.run([cli, "--config-file", conf, "show", volume["id"],
                                       "--format", "json"], capture_output=True, text=True,
                                      check=True).stdout)
    assert shown["host"] == volume["host"] and shown["migration_status"] == "error"
    assert shown["status"] == "available"
    assert sha256_of(shown["provider_location"]) == before
    progress = json.loads(subprocess.run([cli, "--config-file", conf, "progress",
                                          volume["id"], "--format", "json"],
                                         capture_output=True, text=True, check=True).stdout)
    assert "removed during the copy" in progress["error"]


# -- the source is read exactly ------------------------------------------------------
SOURCE_MODES = [
    pytest.param("path", "kernel", id="path-kernel"),
    pytest.param("path", "dd", id="path-dd"),
    pytest.param("stream", "auto", id="stream-fileio"),
    pytest.param("block", "kernel", id="block-kernel",
                 marks=pytest.mark.skipif(not HAS_LOOP, reason="loop devices need root")),
    pytest.param("block", "dd", id="block-dd",
                 marks=pytest.mark.skipif(not HAS_LOOP, reason="loop devices need root")),
]


@pytest.mark.parametrize("access,method", SOURCE_MODES)
def test_source_shorter_than_its_volume(make_service, tmp_path, access, method):
    svc = _service(make_service, access, method)
    volume = svc.create_volume(SIZE, host("a"))
    fill_random(volume["provider_location"], SIZE)
    os.truncate(volume["provider_location"], MiB)
    before = sha256_of(volume["provider_location"])
    response = svc.migrate_volume(volume["id"], host("b"))
    migration = svc.wait(response.migration_id, PATIENCE)
    assert migration["state"] == "error"
    assert "ended" in migration["error"], migration["error"]
    after = svc.get_volume(volume["id"])
    assert after["host"] == volume["host"] and after["migration_status"] == "error"
    assert sha256_of(after["provider_location"]) == before
    assert volume_files(tmp_path, "b") == []


@pytest.mark.parametrize("method", ["kernel", "dd"])
def test_source_truncated_during_the_copy(make_service, copy_gate, tmp_path, method):
    svc = _service(make_service, method=method)
    volume, _, response = _held_migration(svc, copy_gate)
    os.truncate(volume["provider_location"], SIZE // 2)
    migration = _strike_then_release(svc, copy_gate, response)
    assert migration["state"] == "error", migration
    assert "source ended early" in migration["error"], migration["error"]
    after = svc.get_volume(volume["id"])
    assert after["host"] == volume["host"] and os.path.exists(after["provider_location"])
    assert volume_files(tmp_path, "b") == []


# -- symbolic links --------------------------------------------------------------------
@pytest.mark.parametrize("access,method", SOURCE_MODES)
def test_a_symlink_in_place_of_the_source_is_not_followed(make_service, tmp_path, access,
                                                          method):
    svc = _service(make_service, access, method)
    volume = svc.create_volume(SIZE, host("a"))
    outside = tmp_path / "outside-the-backend"
    secret = fill_random(_make(outside), SIZE)
    os.unlink(volume["provider_location"])
    os.symlink(outside, volume["provider_location"])
    response = svc.migrate_volume(volume["id"], host("b"))
    migration = svc.wait(response.migration_id, PATIENCE)
    assert migration["state"] == "error"
    assert "symbolic link" in migration["error"], migration["error"]
    assert sha256_of(str(outside)) == secret  # untouched
    after = svc.get_volume(volume["id"])
    assert after["host"] == volume["host"]
    assert os.path.islink(after["provider_location"])
    assert volume_files(tmp_path, "b") == []


def _make(path) -> str:
    with open(path, "wb") as f:
        f.truncate(SIZE)
    return str(path)


def test_the_destination_identity_is_recorded_and_carried(make_service):
    """provider_id names the object written; after the swap, the volume's."""
    svc = _service(make_service)
    volume = svc.create_volume(SIZE, host("a"))
    assert volume["provider_id"]
    before = fill_random(volume["provider_location"], SIZE)
    response = svc.migrate_volume(volume["id"], host("b"))
    assert svc.wait(response.migration_id, PATIENCE)["state"] == "success"
    after = svc.get_volume(volume["id"])
    st = os.stat(after["provider_location"])
    assert json.loads(after["provider_id"]) == {"dev": st.st_dev, "ino": st.st_ino,
                                                "size": SIZE}
    assert sha256_of(after["provider_location"]) == before
