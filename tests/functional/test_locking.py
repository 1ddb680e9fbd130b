"""The spec's lock rules: --force locks (maintenance); without it, attach/detach abort."""

import pytest

from vmtest import MiB, wait_migrating, fill_random, host, notifications, sha256_of, volume_files
from volmigrate.engine.exceptions import InvalidVolumeState, VolumeLocked

SIZE = 64 * MiB
SLOW = 16 * MiB  # bytes/s: the copy takes ~4 s, long enough to act during it



def test_locked_migration_is_maintenance_and_refuses_attach_and_detach(make_service):
    svc = make_service(volume_copy_bps_limit=SLOW)
    volume = svc.create_volume(SIZE, host("a"))
    before = fill_random(volume["provider_location"], SIZE)
    response = svc.migrate_volume(volume["id"], host("b"), lock_volume=True)
    assert response.accepted

    assert svc.get_volume(volume["id"])["status"] == "maintenance"
    wait_migrating(svc, volume["id"])
    with pytest.raises(VolumeLocked, match="locked by a running migration.*attach"):
        svc.attach_volume(volume["id"])
    with pytest.raises(VolumeLocked, match="locked by a running migration.*detach"):
        svc.detach_volume(volume["id"])
    during = svc.get_volume(volume["id"])
    assert during["status"] == "maintenance" and during["attach_status"] == "detached"

    migration = svc.wait(response.migration_id, timeout=60)
    assert migration["state"] == "success"
    after = svc.get_volume(volume["id"])
    assert after["status"] == "available" and after["migration_status"] == "success"
    assert sha256_of(after["provider_location"]) == before
    # Once the migration ended, attach works again.
    assert svc.attach_volume(volume["id"])["status"] == "in-use"


def test_attach_during_unlocked_migration_aborts_it_then_attaches(make_service, tmp_path):
    svc = make_service(volume_copy_bps_limit=SLOW)
    volume = svc.create_volume(SIZE, host("a"))
    before = fill_random(volume["provider_location"], SIZE)
    response = svc.migrate_volume(volume["id"], host("b"))
    assert response.accepted

    wait_migrating(svc, volume["id"])
    assert svc.get_volume(volume["id"])["status"] == "available"  # unchanged: no lock
    attached = svc.attach_volume(volume["id"])

    assert attached["status"] == "in-use" and attached["attach_status"] == "attached"
    assert attached["migration_status"] == "error"
    assert attached["host"] == f"{host('a')}#a"
    migration = svc.get_migration(response.migration_id)
    assert migration["state"] == "error"
    assert "aborted: attach" in migration["error"]
    assert sha256_of(attached["provider_location"]) == before
    assert volume_files(tmp_path, "b") == []
    assert [v["id"] for v in svc.list_volumes(include_hidden=True)] == [volume["id"]]
    errors = notifications("volume.migration.error")
    assert len(errors) == 1 and "aborted: attach" in errors[0]["payload"]["error"]


def test_detach_of_a_migrating_available_volume_is_refused_without_abort(make_service):
    svc = make_service(volume_copy_bps_limit=SLOW)
    volume = svc.create_volume(16 * MiB, host("a"))
    response = svc.migrate_volume(volume["id"], host("b"))
    with pytest.raises(InvalidVolumeState, match="not attached"):
        svc.detach_volume(volume["id"])
    assert svc.wait(response.migration_id, 60)["state"] == "success"


def test_abort_by_the_administrator(make_service, tmp_path):
    svc = make_service(volume_copy_bps_limit=SLOW)
    volume = svc.create_volume(SIZE, host("a"))
    before = fill_random(volume["provider_location"], SIZE)
    response = svc.migrate_volume(volume["id"], host("b"), lock_volume=True)
    wait_migrating(svc, volume["id"])
    migration = svc.abort_migration(volume["id"], "aborted by the administrator")
    assert migration["state"] == "error" and "administrator" in migration["error"]
    after = svc.get_volume(volume["id"])
    assert after["status"] == "available" and after["migration_status"] == "error"
    assert sha256_of(after["provider_location"]) == before
    assert volume_files(tmp_path, "b") == []
    assert svc.get_migration(response.migration_id)["state"] == "error"
