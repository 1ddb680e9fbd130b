"""Operators' own tool on RBD: the real `cinder` command against `volmigrate serve`
with two rbd backends of one cluster; a retype between them is Ceph's live migration."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from apitest import ApiServer  # noqa: E402
from vmtest import sha256_of  # noqa: E402

cinder_cli = pytest.importorskip("test_cinder_cli")


def test_cinder_creates_on_rbd_and_retypes_by_live_migration(rbd_backends, ceph, tmp_path):
    backends = rbd_backends("r1", "r2")
    api = ApiServer(tmp_path, sections=backends, enabled_backends="lvm1,lvm2,r1,r2").start()
    cinder, table = cinder_cli.cinder, cinder_cli.table
    try:
        for name, backend in (("ceph-a", "r1"), ("ceph-b", "r2")):
            cinder(api, "type-create", name)
            cinder(api, "type-key", name, "set", f"volume_backend_name={backend}")
        created = table(cinder(api, "create", "--volume-type", "ceph-a", "--name", "db1",
                               "1").stdout)
        volume_id = created["id"]
        assert created["os-vol-host-attr:host"] == "node1@r1#r1"
        pools = cinder(api, "get-pools", "--detail").stdout
        assert "node1@r1#r1" in pools and "node1@r2#r2" in pools and "ceph" in pools

        image = f"volume-{volume_id}"
        source_pool, dest_pool = backends["r1"]["rbd_pool"], backends["r2"]["rbd_pool"]
        ceph.rbd("bench", "--io-type", "write", "--io-size", "4M", "--io-total", "32M",
                 "--io-pattern", "rand", f"{source_pool}/{image}")
        ceph.rbd("export", f"{source_pool}/{image}", str(tmp_path / "before"))
        before = sha256_of(str(tmp_path / "before"))

        cinder(api, "retype", "--migration-policy", "on-demand", "db1", "ceph-b")
        moved = api.wait_migration(volume_id)
        assert moved["migration_status"] == "success"
        assert moved["os-vol-host-attr:host"] == "node1@r2#r2"
        assert moved["volume_type"] == "ceph-b"
        shown = table(cinder(api, "show", "db1").stdout)
        assert shown["os-vol-mig-status-attr:migstat"] == "success"

        # Moved by Ceph: the same image name, now in the other pool only.
        assert ceph.rbd("ls", source_pool).split() == []
        assert ceph.rbd("ls", dest_pool).split() == [image]
        ceph.rbd("export", f"{dest_pool}/{image}", str(tmp_path / "after"))
        assert sha256_of(str(tmp_path / "after")) == before
        log = (tmp_path / "state" / "volmigrate.log").read_text()
        assert f"rbd migration of {image} to pool {dest_pool} committed" in log
    finally:
        api.stop()
