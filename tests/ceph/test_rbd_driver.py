"""The rbd driver against a real cluster: local -> RBD -> RBD (Ceph's live migration) -> local."""

from vmtest import MiB, host, sha256_of, write_volume, volume_sha256

SIZE = 64 * MiB
EXTENTS = [(4 * MiB, 8 * MiB), (40 * MiB + 4096, 3 * MiB)]


def test_local_to_rbd_to_rbd_to_local(make_service, rbd_backends):
    svc = make_service(backends={"a": {}, **rbd_backends("r1", "r2")})
    volume = svc.create_volume(SIZE, host("a"))
    before = write_volume(svc, volume, EXTENTS)

    to_rbd = svc.wait(svc.migrate_volume(volume["id"], host("r1")).migration_id, 120)
    assert to_rbd["state"] == "success", to_rbd["error"]
    assert to_rbd["case"] == "host-copy-file-io"
    assert volume_sha256(svc, svc.get_volume(volume["id"])) == before

    moved = svc.wait(svc.migrate_volume(volume["id"], host("r2")).migration_id, 120)
    assert moved["state"] == "success", moved["error"]
    assert moved["case"] == "driver-assisted"
    after = svc.get_volume(volume["id"])
    assert after["host"] == f"{host('r2')}#r2"
    assert volume_sha256(svc, after) == before

    back = svc.wait(svc.migrate_volume(volume["id"], host("a")).migration_id, 120)
    assert back["state"] == "success", back["error"]
    final = svc.get_volume(volume["id"])
    assert sha256_of(final["provider_location"]) == before
