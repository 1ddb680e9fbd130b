"""Bad requests get a clear message and change nothing."""

import shutil
import threading
import uuid

import pytest

from vmtest import HOLDABLE, PATIENCE, MiB, fill_random, host, snapshot, write_config
from volmigrate.engine import MigrationService, REJECTED_PREFIX
from volmigrate.engine.exceptions import ConfigError, InvalidInput, VolumeNotFound


def _rejected(svc, volume_id, dest, reason, **kwargs):
    before = snapshot(svc)
    response = svc.migrate_volume(volume_id, dest, **kwargs)
    assert not response.accepted
    assert response.migration_id is None
    assert response.message == REJECTED_PREFIX + response.reason
    assert reason in response.reason, response.reason
    assert snapshot(svc) == before


@pytest.fixture
def volume(service):
    return service.create_volume(4 * MiB, host("a"), name="v")


def test_unknown_volume(service):
    _rejected(service, str(uuid.uuid4()), host("b"), "not found")


@pytest.mark.parametrize("dest,reason", [
    ("node1@nosuch", "no enabled backend 'nosuch'"),
    ("othernode@b", "this service serves node node1"),
    ("node1@b#nopool", "has no pool 'nopool'"),
])
def test_unknown_host(service, volume, dest, reason):
    _rejected(service, volume["id"], dest, reason)


@pytest.mark.parametrize("dest", ["node1", "node1@", "@b", "node1@b#", "node1@b#p#q",
                                  "node 1@b", "", "node1@b/../x"])
def test_malformed_host(service, volume, dest):
    _rejected(service, volume["id"], dest, "is malformed: expected node@backend[#pool]")


@pytest.mark.parametrize("dest", ["node1@a", "node1@a#a"])
def test_same_host(service, volume, dest):
    _rejected(service, volume["id"], dest, "is already on host node1@a#a")


def test_volume_in_use(service, volume):
    service.attach_volume(volume["id"])
    _rejected(service, volume["id"], host("b"), "is in-use: only available volumes")


def test_volume_in_error(service, volume):
    service.db.update_volume(volume["id"], {"status": "error"})
    _rejected(service, volume["id"], host("b"), "is error: only available volumes")


def _held_volume(make_service):
    """A service whose migration copies are held (copy_gate), and a volume with data."""
    svc = make_service(**HOLDABLE)
    vol = svc.create_volume(4 * MiB, host("a"))
    fill_random(vol["provider_location"], 4 * MiB)
    return svc, vol


def test_volume_already_migrating(make_service, copy_gate):
    svc, vol = _held_volume(make_service)
    first = copy_gate.migrate(svc, vol["id"], host("b"))  # still running: held
    _rejected(svc, vol["id"], host("b"), "already being migrated")
    copy_gate.release(first.migration_id)
    assert svc.wait(first.migration_id, PATIENCE)["state"] == "success"


def test_hidden_destination_cannot_be_migrated_or_seen(make_service, copy_gate):
    svc, vol = _held_volume(make_service)
    first = copy_gate.migrate(svc, vol["id"], host("b"))
    hidden = [v for v in svc.list_volumes(include_hidden=True) if v["id"] != vol["id"]]
    assert len(hidden) == 1 and hidden[0]["migration_status"] == f"target:{vol['id']}"
    assert [v["id"] for v in svc.list_volumes()] == [vol["id"]]
    with pytest.raises(VolumeNotFound):
        svc.get_volume(hidden[0]["id"])
    _rejected(svc, hidden[0]["id"], host("a"), "not found")
    copy_gate.release(first.migration_id)
    assert svc.wait(first.migration_id, PATIENCE)["state"] == "success"


def test_non_boolean_flags(service, volume):
    _rejected(service, volume["id"], host("b"), "must be true or false", lock_volume="yes")


def test_concurrent_requests_exactly_one_wins(make_service, copy_gate):
    svc = make_service(**HOLDABLE)
    for _ in range(5):
        # The winner's copy is held until every thread has had its answer: a thread
        # the scheduler held back asks while it runs (a finished migration would
        # reject it as "already on host b" instead).
        vol = svc.create_volume(4 * MiB, host("a"))
        fill_random(vol["provider_location"], 4 * MiB)
        barrier = threading.Barrier(8)
        answers = []

        def request():
            barrier.wait()
            answers.append(svc.migrate_volume(vol["id"], host("b")))

        threads = [threading.Thread(target=request) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        accepted = [a for a in answers if a.accepted]
        assert len(accepted) == 1, [a.message for a in answers]
        assert all("already being migrated" in a.reason for a in answers if not a.accepted), \
            [a.reason for a in answers]
        copy_gate.wait_held(svc, accepted[0].migration_id)
        copy_gate.release(accepted[0].migration_id)
        assert svc.wait(accepted[0].migration_id, PATIENCE)["state"] == "success"
        assert len(svc.list_migrations(vol["id"])) == 1


@pytest.mark.parametrize("size,reason", [
    ("0", "greater than zero"), ("-1", "invalid size"), ("abc", "invalid size"),
    ("10X", "invalid size"), ("100", "multiple of 512"), ("1.5", "whole number"),
    ("", "invalid size"), (0, "greater than zero"),
])
def test_bad_sizes(service, tmp_path, size, reason):
    before = snapshot(service)
    with pytest.raises(InvalidInput, match=reason):
        service.create_volume(size, host("a"))
    assert snapshot(service) == before
    assert not (tmp_path / "state" / "volumes" / "a").exists() or \
        list((tmp_path / "state" / "volumes" / "a").iterdir()) == []


def test_create_on_unknown_or_malformed_host(service):
    before = snapshot(service)
    with pytest.raises(InvalidInput, match="no enabled backend 'zz'"):
        service.create_volume("1M", "node1@zz")
    with pytest.raises(InvalidInput, match="malformed"):
        service.create_volume("1M", "zz")
    assert snapshot(service) == before


def test_delete_refused_while_migrating(make_service, copy_gate):
    svc, vol = _held_volume(make_service)
    response = copy_gate.migrate(svc, vol["id"], host("b"))
    with pytest.raises(Exception, match="is being migrated"):
        svc.delete_volume(vol["id"])
    copy_gate.release(response.migration_id)
    assert svc.wait(response.migration_id, PATIENCE)["state"] == "success"
    svc.delete_volume(vol["id"])
    assert svc.list_volumes(include_hidden=True) == []


def test_unknown_migration_status_filter(service):
    with pytest.raises(InvalidInput, match="unknown migration status 'bogus'"):
        service.list_volumes(migration_status="bogus")


@pytest.mark.parametrize("defaults,backends,message", [
    ({"migration_progress_report_interval": "abc"}, None,
     "migration_progress_report_interval"),
    ({"migration_progress_report_interval": "0"}, None,
     "migration_progress_report_interval"),
    ({"volume_copy_bps_limit": "-5"}, None, "volume_copy_bps_limit"),
    ({"volume_dd_blocksize": "1000"}, None, "multiple of 512"),
    ({"volume_dd_blocksize": "1G"}, None, "between 512 and 64M"),
    ({"volume_dd_blocksize": "big"}, None, "volume_dd_blocksize"),
    ({"host": "bad@host"}, None, "[DEFAULT] host"),
    ({"enabled_backends": ""}, {}, "no backend configured"),
    ({}, {"a": {"volume_driver": "nosuch"}}, "no such driver (known: local, lvm, rbd, storwize)"),
    ({}, {"a": {"local_access": "telepathy"}}, "local_access"),
    ({"enabled_backends": "a,missing"}, {"a": {}}, "has no [missing] section"),
    ({}, {"a": {"volume_driver": "storwize"}}, "backend a: san_ip is not set"),
    ({}, {"a": {"volume_driver": "storwize", "san_ip": "127.0.0.1", "san_ssh_port": "1",
                "storwize_svc_volpool_name": "p1", "storwize_ssh_retries": "1"}},
     "cannot reach the Storwize array at 127.0.0.1:1"),
    ({}, {"a": {"volume_driver": "storwize", "san_ip": "127.0.0.1", "san_ssh_port": "1",
                "storwize_connector": "iscsi"}}, "storwize_connector"),
    pytest.param({}, {"a": {"volume_driver": "lvm", "volume_group": "no-such-vg",
                            "lvm_activation": "loop"}}, "volume group no-such-vg not found",
                 marks=pytest.mark.skipif(not shutil.which("vgs"), reason="no lvm2")),
    ({}, {"a": {"volume_driver": "lvm", "lvm_type": "sparse"}}, "lvm_type"),
    # A value the option's type accepts, refused by the driver's own setup.
    ({}, {"a": {"local_volume_dir": "/dev/null/volumes"}},
     "local_volume_dir /dev/null/volumes cannot be created"),
])
def test_bad_config_values(tmp_path, defaults, backends, message):
    from oslo_config import cfg
    path = write_config(tmp_path, backends, **defaults)
    conf = cfg.ConfigOpts()
    conf(["--config-file", path])
    svc = MigrationService(conf)
    with pytest.raises(ConfigError) as info:
        svc.start()
    assert message in str(info.value)
    assert not (tmp_path / "state" / "volumes").exists()
