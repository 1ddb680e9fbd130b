"""`volmigrate cancel VOLUME` from another shell stops a migration the service runs."""

import os
import subprocess

from apitest import BIN
from vmtest import fill_random, sha256_of, wait_for, MiB


def run(api, *args):
    return subprocess.run([os.path.join(BIN, "volmigrate"), "--config-file", api.config, *args],
                          capture_output=True, text=True, timeout=300)


def test_cancel_command_rolls_back_a_migration_the_service_runs(make_api):
    api = make_api(volume_copy_bps_limit=64 * 1024, migration_checkpoint_size="1M").start()
    vid = api.create_volume("v")["id"]
    digest = fill_random(api.data_file(api.volume(vid)), 4 * MiB)
    source = api.host_of(vid)
    nothing = run(api, "cancel", vid)
    assert nothing.returncode == 1
    assert "There is no migration being performed for volume" in nothing.stderr
    assert api.action(vid, {"os-migrate_volume": {"host": api.other_host(vid)}}).status_code \
        == 202
    wait_for(lambda: api.volume(vid)["migration_status"] == "migrating")
    cancelled = run(api, "cancel", vid)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled by the administrator" in cancelled.stdout
    volume = api.volume(vid)
    assert (volume["migration_status"], volume["os-vol-host-attr:host"]) == ("error", source)
    assert sha256_of(api.data_file(volume)) == digest
