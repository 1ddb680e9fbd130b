"""Host copies to and from RBD keep every copy's contract.

Only the objects that exist are read and written (the verification, too,
hashes only them), the copy resumes from its last durable checkpoint after a
kill -9, and the rate limit holds it.
"""

import json
import os
import re
import signal
import subprocess
import sys

from oslo_config import cfg

from vmtest import (HOLD_BPS, PATIENCE, MiB, host, sha256_of, volume_sha256, wait_for,
                    write_config, write_volume)
from volmigrate.engine import MigrationService

CLI = os.path.join(os.path.dirname(sys.executable), "volmigrate")
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 64 * MiB
# Data in three places, the rest never written; 4 MiB objects: objects 1-2, 9 and 15.
EXTENTS = [(4 * MiB, 8 * MiB), (36 * MiB + 4096, 64 * 1024), (60 * MiB, 4 * MiB)]
OBJECTS_WITH_DATA = 4 * 4 * MiB


def allocated(ceph, pool: str, image: str) -> int:
    """Bytes of the image's objects that exist (rbd du, from the object map)."""
    out = json.loads(ceph.rbd("du", "--format", "json", f"{pool}/{image}"))
    return sum(i["used_size"] for i in out["images"])


def images(ceph, pool: str) -> list[str]:
    return sorted(json.loads(ceph.rbd("ls", "--format", "json", pool)))


def test_verified_copies_touch_only_the_objects_that_exist(make_service, rbd_backends, ceph,
                                                           caplog):
    backends = rbd_backends("r1", "r2")
    caplog.set_level("INFO", logger="volmigrate.flows.copy_tasks")
    svc = make_service(backends={"a": {}, **backends}, migration_verify="checksum")
    volume = svc.create_volume(SIZE, host("a"))
    before = write_volume(svc, volume, EXTENTS)

    for dest in ("r1", "r2"):  # local -> RBD, then RBD -> RBD through this host
        migration = svc.wait(svc.migrate_volume(volume["id"], host(dest),
                                                force_host_copy=True).migration_id, 120)
        assert migration["state"] == "success", migration["error"]
        assert migration["case"] == "host-copy-file-io"
        moved = svc.get_volume(volume["id"])
        assert moved["host"] == f"{host(dest)}#{dest}"
        assert volume_sha256(svc, moved) == before
        pool = backends[dest]["rbd_pool"]
        image = f"volume-{moved['name_id']}"
        assert images(ceph, pool) == [image]
        # Thin: only the objects that hold data exist at the destination.
        assert allocated(ceph, pool, image) == OBJECTS_WITH_DATA
        log = caplog.text
        verified = re.findall(rf"Migration {migration['id']}: verified (\d+) bytes", log)
        # The verification read what exists on either side, not the whole volume.
        assert verified and 0 < int(verified[0]) <= OBJECTS_WITH_DATA, verified
    assert images(ceph, backends["r1"]["rbd_pool"]) == []

    back = svc.wait(svc.migrate_volume(volume["id"], host("a")).migration_id, 120)
    assert back["state"] == "success", back["error"]
    final = svc.get_volume(volume["id"])
    assert sha256_of(final["provider_location"]) == before
    assert os.stat(final["provider_location"]).st_blocks * 512 <= OBJECTS_WITH_DATA
    assert images(ceph, backends["r2"]["rbd_pool"]) == []


def _service(conf_path: str) -> MigrationService:
    conf = cfg.ConfigOpts()
    conf(["--config-file", conf_path])
    return MigrationService(conf)


def _cli(conf_path: str, *args: str, wait: bool = True):
    env = dict(os.environ, PYTHONPATH=TESTS_DIR)
    proc = subprocess.Popen([CLI, "--config-file", conf_path, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        proc.stdout_text, proc.stderr_text = proc.communicate(timeout=PATIENCE)
    return proc


def test_kill_during_a_copy_to_rbd_resumes_from_its_checkpoint(rbd_backends, ceph, tmp_path):
    block = 8 * MiB
    backends = {"a": {}, **rbd_backends("b")}
    # Held: the copy moves one block at once, makes it durable, then waits for
    # block / HOLD_BPS seconds (hours) for the next, until it is killed.
    conf_path = write_config(tmp_path, backends, volume_copy_bps_limit=HOLD_BPS,
                             volume_dd_blocksize=block, migration_checkpoint_size="1M")
    svc = _service(conf_path)
    svc.start(recover=False)
    volume = svc.create_volume(SIZE, host("a"), name="precious")
    before = write_volume(svc, volume)  # dense
    svc.stop()

    proc = _cli(conf_path, "migrate", volume["id"], host("b"), "--wait", wait=False)
    svc = _service(conf_path)
    svc.connect()
    try:
        def held():
            row = svc.db.latest_migration(volume["id"]) or {}
            return min(row.get("progress_bytes") or 0, row.get("bytes_durable") or 0) >= block
        wait_for(lambda: proc.poll() is not None or held())
        assert proc.poll() is None, f"it ended ({proc.returncode}) before its kill"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=PATIENCE)
    durable = svc.db.latest_migration(volume["id"])["bytes_durable"]
    assert durable == block

    text = open(conf_path).read().replace(f"volume_copy_bps_limit = {HOLD_BPS}",
                                          "volume_copy_bps_limit = 0")
    open(conf_path, "w").write(text)
    recovered = _cli(conf_path, "recover")
    assert recovered.returncode == 0, recovered.stderr_text + recovered.stdout_text

    migration = svc.db.latest_migration(volume["id"])
    assert migration["state"] == "success", migration["error"]
    moved = svc.get_volume(volume["id"])
    assert moved["host"] == f"{host('b')}#b" and moved["status"] == "available"
    log = (tmp_path / "state" / "volmigrate.log").read_text()
    resumed = re.findall(r"the copy wrote (\d+) bytes \(from byte (\d+) of (\d+)\)", log)
    assert [tuple(map(int, r)) for r in resumed] == [(SIZE - durable, durable, SIZE)]
    svc.start(recover=False)
    try:
        assert volume_sha256(svc, svc.get_volume(volume["id"])) == before
    finally:
        svc.stop()
    assert images(ceph, backends["b"]["rbd_pool"]) == [f"volume-{moved['name_id']}"]
