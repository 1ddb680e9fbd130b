"""openstacksdk (`auth_type: none`, unmodified) drives volmigrate serve through conn.block_storage."""

import pytest

from vmtest import MiB, fill_random, sha256_of

openstack = pytest.importorskip("openstack", reason="openstacksdk is in the test extras")


def test_openstacksdk_migrates_retypes_and_resets(api):
    conn = openstack.connect(auth_type="none", auth={"endpoint": api.url + "/v3"},
                             block_storage_endpoint_override=api.url + "/v3")
    bs = conn.block_storage
    gold = bs.create_type(name="gold", extra_specs={"volume_backend_name": "lvm1"})
    silver = bs.create_type(name="silver", extra_specs={"volume_backend_name": "lvm2"})
    assert {t.name for t in bs.types()} == {"gold", "silver"}
    volume = bs.create_volume(size=1, name="db1", volume_type="gold")
    volume = bs.wait_for_status(volume, "available", wait=60)
    assert bs.get_volume(volume.id).host == "node1@lvm1#lvm1"
    digest = fill_random(api.data_file(api.volume(volume.id)), 8 * MiB)

    pools = {p.name for p in bs.backend_pools()}
    assert pools == {"node1@lvm1#lvm1", "node1@lvm2#lvm2"}
    assert {s.host for s in bs.services(binary="cinder-volume")} == {"node1@lvm1", "node1@lvm2"}

    plain = bs.create_type(name="plain")  # names no backend
    bs.retype_volume(volume, plain.name)  # policy never: no migration needed
    assert bs.get_volume(volume.id).volume_type == "plain"
    bs.migrate_volume(volume, host="node1@lvm2#lvm2")
    moved = api.wait_migration(volume.id)
    assert bs.get_volume(volume.id).migration_status == "success"  # read from migstat
    assert sha256_of(api.data_file(moved)) == digest

    bs.retype_volume(volume, silver.name)  # on lvm2 already: no migration
    assert bs.get_volume(volume.id).volume_type == "silver"
    bs.retype_volume(volume, gold.name, migration_policy="on-demand")
    back = api.wait_migration(volume.id)
    got = bs.get_volume(volume.id)
    assert (got.volume_type, got.host, got.migration_status) == (
        "gold", "node1@lvm1#lvm1", "success")
    assert sha256_of(api.data_file(back)) == digest

    bs.reset_volume_status(volume, status="available", attach_status="detached",
                           migration_status="none")
    assert bs.get_volume(volume.id).migration_status is None
    assert [v.id for v in bs.volumes(details=True)] == [volume.id]
    bs.delete_volume(volume, force=False)
    assert bs.find_volume(volume.id) is None
