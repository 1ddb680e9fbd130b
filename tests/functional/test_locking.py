"""The spec's lock rules: --force locks (maintenance); without it, attach/detach abort."""

import pytest

from vmtest import (HOLDABLE, PATIENCE, MiB, fill_random, host, notifications, sha256_of,
                    volume_files)
from volmigrate.engine.exceptions import InvalidVolumeState, VolumeLocked

# Each migration's copy is held (copy_gate) after its first MiB while the test
# acts, then released or aborted: nothing depends on how long a copy takes.
SIZE = 4 * MiB


def test_locked_migration_is_maintenance_and_refuses_attach_and_detach(make_service,
                                                                      copy_gate):
    svc = make_service(**HOLDABLE)
    volume = svc.create_volume(SIZE, host("a"))
    before = fill_random(volume["provider_location"], SIZE)
    response = svc.migrate_volume(volume["id"], host("b"), lock_volume=True)
    assert response.accepted

    assert svc.get_volume(volume["id"])["status"] == "maintenance"
    copy_gate.wait_held(svc, response.migration_id)
    assert svc.get_volume(volume["id"])["migration_status"] == "migrating"
    with pytest.raises(VolumeLocked, match="locked by a running migration.*attach"):
        svc.attach_volume(volume["id"])
    with pytest.raises(VolumeLocked, match="locked by a running migration.*detach"):
        svc.detach_volume(volume["id"])
    during = svc.get_volume(volume["id"])
    assert during["status"] == "maintenance" and during["attach_status"] == "detached"
    assert during["migration_status"] == "migrating"

    copy_gate.release(response.migration_id)
    migration = svc.wait(response.migration_id, timeout=PATIENCE)
    assert migration["state"] == "success"
    after = svc.get_volume(volume["id"])
    assert after["status"] == "available" and after["migration_status"] == "success"
    assert sha256_of(after["provider_location"]) == before
    # Once the migration ended, attach works again.
    assert svc.attach_volume(volume["id"])["status"] == "in-use"


def test_attach_during_unlocked_migration_aborts_it_then_attaches(make_service, copy_gate,
                                                                 tmp_path):
    svc = make_service(**HOLDABLE)
    volume = svc.create_volume(SIZE, host("a"))
    before = fill_random(volume["provider_location"], SIZE)
    response = copy_gate.migrate(svc, volume["id"], host("b"))
    assert svc.get_volume(volume["id"])["migration_status"] == "migrating"
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


def test_detach_of_a_migrating_available_volume_is_refused_without_abort(make_service,
                                                                        copy_gate):
    svc = make_service(**HOLDABLE)
    volume = svc.create_volume(SIZE, host("a"))
    before = fill_random(volume["provider_location"], SIZE)
    response = copy_gate.migrate(svc, volume["id"], host("b"))
    with pytest.raises(InvalidVolumeState, match="not attached"):
        svc.detach_volume(volume["id"])
    # Refused, and the migration goes on.
    assert svc.get_volume(volume["id"])["migration_status"] == "migrating"
    assert svc.get_migration(response.migration_id)["abort_reason"] is None
    copy_gate.release(response.migration_id)
    assert svc.wait(response.migration_id, PATIENCE)["state"] == "success"
    assert sha256_of(svc.get_volume(volume["id"])["provider_location"]) == before


def test_abort_by_the_administrator(make_service, copy_gate, tmp_path):
    svc = make_service(**HOLDABLE)
    volume = svc.create_volume(SIZE, host("a"))
    before = fill_random(volume["provider_location"], SIZE)
    response = copy_gate.migrate(svc, volume["id"], host("b"), lock_volume=True)
    migration = svc.abort_migration(volume["id"], "aborted by the administrator")
    assert migration["state"] == "error" and "administrator" in migration["error"]
    after = svc.get_volume(volume["id"])
    assert after["status"] == "available" and after["migration_status"] == "error"
    assert sha256_of(after["provider_location"]) == before
    assert volume_files(tmp_path, "b") == []
    assert svc.get_migration(response.migration_id)["state"] == "error"
