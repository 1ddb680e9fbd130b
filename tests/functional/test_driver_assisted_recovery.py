"""kill -9 during a driver-assisted (Storwize pool to pool) migration, then recover.

The array goes on moving the vdisk while volmigrate is dead; the resumed flow
must wait for that move (never start a second one) and record the new pool.
"""

import os
import signal
import subprocess
import sys

import pytest
from oslo_config import cfg

from vmtest import MiB, host, lose_flow, volume_sha256, write_config, write_volume
from volmigrate.engine import MigrationService

CLI = os.path.join(os.path.dirname(sys.executable), "volmigrate")
ATOMS = ["mark-starting", "start-driver-move", "wait-for-driver-move", "monitor-progress",
         "update-volume-host", "mark-success"]
SIZE = 32 * MiB


class Setup:
    def __init__(self, tmp_path, array):
        self.array = array
        self.conf_path = write_config(tmp_path, {"svc": array.backend()})
        self.svc = self._service()
        self.svc.start(recover=False)
        self.volume = self.svc.create_volume(SIZE, host("svc") + "#pool1")
        self.before = write_volume(self.svc, self.volume, [(0, SIZE)])
        self.svc.stop()
        self.svc = self._service()  # read-only from here: the CLI processes run the flows
        self.svc.connect()

    def _service(self):
        conf = cfg.ConfigOpts()
        conf(["--config-file", self.conf_path])
        return MigrationService(conf)

    def cli(self, *args, kill_at=None):
        env = dict(os.environ)
        env.pop("VOLMIGRATE_TEST_KILL_AT", None)
        if kill_at:
            env["VOLMIGRATE_TEST_KILL_AT"] = kill_at
        return subprocess.run([CLI, "--config-file", self.conf_path, *args], env=env,
                              capture_output=True, text=True, timeout=120)

    def assert_moved(self):
        migration = self.svc.db.latest_migration(self.volume["id"])
        volume = self.svc.get_volume(self.volume["id"])
        assert migration["state"] == "success", migration["error"]
        assert migration["case"] == "driver-assisted"
        assert volume["host"] == host("svc") + "#pool2"
        assert (volume["status"], volume["migration_status"]) == ("available", "success")
        assert self.array.vdisks() == {f"volume-{self.volume['id']}": "pool2"}
        started = MigrationService(self.svc.conf)
        started.start(recover=False)
        try:
            assert volume_sha256(started, volume) == self.before
            # A second recovery finds nothing (asked here, not by a third process:
            # the command's words are checked in test_crash_recovery.test_nothing_to_recover).
            assert started.recover() == []
        finally:
            started.stop()


@pytest.mark.parametrize("state", ["RUNNING", "SUCCESS"])
@pytest.mark.parametrize("atom", ATOMS)
def test_kill_at_every_atom_of_the_array_move(tmp_path, make_array, atom, state):
    s = Setup(tmp_path, make_array(migrate_rate="64M"))
    killed = s.cli("migrate", s.volume["id"], host("svc") + "#pool2", "--lock-volume",
                   kill_at=f"{atom}:{state}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    recovered = s.cli("recover")
    assert recovered.returncode == 0, recovered.stderr + recovered.stdout
    s.assert_moved()
    # The array moved the vdisk once: a second migratevdisk would have been refused
    # (already in pool2, or already migrating) and the migration would be in error.


def test_lost_flow_detail_gets_a_new_flow_that_waits_for_the_array(tmp_path, make_array):
    s = Setup(tmp_path, make_array(migrate_rate="32M"))
    killed = s.cli("migrate", s.volume["id"], host("svc") + "#pool2",
                   kill_at="wait-for-driver-move:RUNNING")
    assert killed.returncode == -signal.SIGKILL
    migration = s.svc.db.latest_migration(s.volume["id"])
    lose_flow(s.svc, migration["flow_uuid"])
    recovered = s.cli("recover")
    assert recovered.returncode == 0, recovered.stderr
    assert "a new flow took over the backend's move" in recovered.stdout
    s.assert_moved()
