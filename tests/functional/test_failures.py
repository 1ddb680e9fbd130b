"""A failure at any step leaves the volume usable, `error`, the source intact, nothing behind."""

import os
import subprocess

import pytest

from vmtest import IS_ROOT, MiB, fill_random, host, notifications, sha256_of, volume_files
from volmigrate.engine.exceptions import BackendError

SIZE = 32 * MiB
FAULTY = "vmtest_faulty:FaultyLocalDriver"


def _assert_clean_failure(svc, tmp_path, volume, before, response, reason):
    migration = svc.wait(response.migration_id, 60)
    assert migration["state"] == "error"
    assert reason in migration["error"]
    after = svc.get_volume(volume["id"])
    assert after["migration_status"] == "error"
    assert after["status"] == "available"  # restored from maintenance
    assert after["host"] == volume["host"]
    assert after["name_id"] == volume["name_id"]
    assert sha256_of(after["provider_location"]) == before
    assert [v["id"] for v in svc.list_volumes(include_hidden=True)] == [volume["id"]]
    assert volume_files(tmp_path, "b") == []
    errors = notifications("volume.migration.error")
    assert len(errors) == 1
    assert errors[0]["priority"] == "ERROR"
    assert reason in errors[0]["payload"]["error"]
    assert errors[0]["payload"]["migration_status"] == "error"
    assert notifications("volume.migration.end") == []
    # The volume is usable: it can be migrated again... once the fault is gone.
    return migration


@pytest.mark.parametrize("side,operation,reason", [
    ("b", "create", "creating the destination volume"),
    ("b", "connect", "connecting the destination volume"),
    ("a", "connect", "connecting the source volume"),
    ("a", "disconnect", "disconnecting volume"),
    ("a", "delete", "deleting the source data"),
])
def test_driver_failure(make_service, tmp_path, side, operation, reason):
    backends = {"a": {"volume_driver": FAULTY}, "b": {"volume_driver": FAULTY}}
    backends[side]["fail_on"] = operation
    svc = make_service(backends=backends)
    volume = svc.create_volume(SIZE, host("a"))
    before = fill_random(volume["provider_location"], SIZE)
    response = svc.migrate_volume(volume["id"], host("b"), lock_volume=True)
    assert response.accepted
    migration = _assert_clean_failure(svc, tmp_path, volume, before, response, reason)
    assert f"injected failure of {operation}" in migration["error"]


# What each copy method says when it fails (copy_method = dd, or kernel).
COPY_FAILURES = {"dd": "dd exited with status 1", "kernel": "kernel copy failed at byte"}
OPEN_FAILURES = {"dd": "dd exited with status 1", "kernel": "cannot open"}


@pytest.mark.skipif(not IS_ROOT, reason="mounting a small tmpfs needs root")
@pytest.mark.parametrize("method", ["dd", "kernel"])
def test_copy_fails_when_the_destination_is_full(make_service, tmp_path, method):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs", str(small)], check=True)
    try:
        svc = make_service(backends={"a": {}, "b": {"local_volume_dir": str(small)}},
                           copy_method=method)
        volume = svc.create_volume(SIZE, host("a"))
        before = fill_random(volume["provider_location"], SIZE)
        response = svc.migrate_volume(volume["id"], host("b"), lock_volume=True)
        migration = svc.wait(response.migration_id, 60)
        assert COPY_FAILURES[method] in migration["error"]
        assert "No space left on device" in migration["error"]
        assert os.listdir(small) == []
        _assert_clean_failure(svc, tmp_path, volume, before, response, COPY_FAILURES[method])
    finally:
        svc.stop()
        subprocess.run(["umount", str(small)], check=True)


@pytest.mark.parametrize("method", ["dd", "kernel"])
def test_copy_fails_when_the_destination_cannot_be_opened(make_service, tmp_path, method):
    svc = make_service(copy_method=method)
    volume = svc.create_volume(SIZE, host("a"))
    before = fill_random(volume["provider_location"], SIZE)
    # The destination connection names a directory: dd cannot write it.
    dest_dir = tmp_path / "state" / "volumes" / "b"
    orig = svc.drivers["b"].connect_volume

    def connect_to_a_directory(vol, writable):
        conn = orig(vol, writable)
        return dict(conn, path=str(dest_dir))

    svc.drivers["b"].connect_volume = connect_to_a_directory
    response = svc.migrate_volume(volume["id"], host("b"))
    _assert_clean_failure(svc, tmp_path, volume, before, response, OPEN_FAILURES[method])


def test_delete_on_a_disabled_backend_changes_nothing(make_service):
    svc = make_service()
    volume = svc.create_volume(MiB, host("b"))
    svc.stop()
    svc = make_service(backends={"a": {}})  # backend b is no longer enabled
    with pytest.raises(BackendError, match="does not have enabled"):
        svc.delete_volume(volume["id"])
    after = svc.get_volume(volume["id"])
    assert after["status"] == "available"  # not stuck `deleting`
    assert os.path.exists(after["provider_location"])
