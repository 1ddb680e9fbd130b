"""kill -9 at any point of a migration; recovery resumes or rolls it back cleanly.

The migration runs in a real `volmigrate migrate` process that dies by
SIGKILL (the test-only hook VOLMIGRATE_TEST_KILL_AT, or a kill from here in
the middle of the copy); `volmigrate recover` then runs in a new process.
"""

import os
import re
import signal
import subprocess
import sys

import pytest
from oslo_config import cfg

from vmtest import (HOLD_BPS, PATIENCE, MiB, fill_random, host, lose_flow, sha256_of,
                    wait_for, write_config)
from volmigrate.engine import MigrationService

CLI = os.path.join(os.path.dirname(sys.executable), "volmigrate")
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERIC_ATOMS = ["mark-starting", "create-destination", "connect-source",
                 "connect-destination", "copy-data", "monitor-progress", "disconnect-source",
                 "disconnect-destination", "prove-destination", "complete-migration",
                 "mark-success"]


class Setup:
    def __init__(self, tmp_path, size, backends=None, **defaults):
        self.tmp_path = tmp_path
        self.conf_path = write_config(tmp_path, backends, **defaults)
        self.svc = self._service()
        self.svc.start(recover=False)
        self.volume = self.svc.create_volume(size, host("a"), name="precious")
        self.before = fill_random(self.volume["provider_location"], size)
        self.other = self.svc.create_volume(MiB, host("a"), name="bystander")
        self.svc.stop()

    def _service(self):
        conf = cfg.ConfigOpts()
        conf(["--config-file", self.conf_path])
        return MigrationService(conf)

    def cli(self, *args, kill_at=None, wait=True):
        env = dict(os.environ, PYTHONPATH=TESTS_DIR)
        env.pop("VOLMIGRATE_TEST_KILL_AT", None)
        if kill_at:
            env["VOLMIGRATE_TEST_KILL_AT"] = kill_at
        proc = subprocess.Popen([CLI, "--config-file", self.conf_path, *args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if not wait:
            return proc
        try:
            out, err = proc.communicate(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            proc.kill()  # a held copy must not outlive the test
            proc.communicate()
            raise
        proc.stdout_text, proc.stderr_text = out, err
        return proc

    def migrate(self, kill_at=None, wait=True):
        return self.cli("migrate", self.volume["id"], host("b"), "--lock-volume",
                        kill_at=kill_at, wait=wait)

    def volume_now(self):
        return self.svc.get_volume(self.volume["id"])

    def migration_now(self):
        return self.svc.db.latest_migration(self.volume["id"])

    def log(self):
        return (self.tmp_path / "state" / "volmigrate.log").read_text()

    def assert_consistent(self, expect_state=None):
        """Final state: ended, usable, data identical, nothing orphaned."""
        migration = self.migration_now()
        volume = self.volume_now()
        assert migration["state"] in ("success", "error"), migration
        if expect_state:
            assert migration["state"] == expect_state, migration["error"]
        assert volume["status"] == "available"  # the lock is released
        assert volume["migration_status"] == migration["state"]
        assert sha256_of(volume["provider_location"]) == self.before
        ids = sorted(v["id"] for v in self.svc.list_volumes(include_hidden=True))
        assert ids == sorted([self.volume["id"], self.other["id"]])
        files = sorted(os.listdir(self.tmp_path / "state" / "volumes" / "a")
                       + os.listdir(self.tmp_path / "state" / "volumes" / "b"))
        expected = sorted([os.path.basename(volume["provider_location"]),
                           os.path.basename(self.other["provider_location"])])
        assert files == expected
        assert self.svc.get_volume(self.other["id"]) == self.other  # bystander untouched
        return migration

    def set_option(self, name, value):
        """Change a [DEFAULT] option of the config file, as an administrator would."""
        text = open(self.conf_path).read()
        text, found = re.subn(rf"(?m)^{name} = .*$", f"{name} = {value}", text)
        assert found == 1, name
        open(self.conf_path, "w").write(text)

    def recover_in_process(self) -> list[dict]:
        """What a recovery does now, asked in this process (a command costs 2 s more)."""
        svc = self._service()
        svc.start(recover=False)
        try:
            return svc.recover()
        finally:
            svc.stop()

    def recover(self, kill_at=None):
        proc = self.cli("recover", kill_at=kill_at)
        if kill_at is None:
            assert proc.returncode == 0, proc.stderr_text + proc.stdout_text
        return proc


@pytest.fixture
def setup(tmp_path):
    made = []

    def factory(size=16 * MiB, **kwargs):
        made.append(Setup(tmp_path, size, **kwargs))
        return made[-1]

    yield factory


@pytest.mark.parametrize("state", ["RUNNING", "SUCCESS"])
@pytest.mark.parametrize("atom", GENERIC_ATOMS)
def test_kill_before_and_after_every_atom(setup, atom, state):
    s = setup(volume_copy_bps_limit=32 * MiB)
    killed = s.migrate(kill_at=f"{atom}:{state}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr_text
    if (atom, state) != ("mark-success", "SUCCESS"):  # that one had finished its work
        assert s.volume_now()["status"] == "maintenance"  # the lock holds across the crash
    recovered = s.recover()
    assert "resumed" in recovered.stdout_text or "Nothing to recover" in recovered.stdout_text
    s.assert_consistent(expect_state="success")
    assert s.recover_in_process() == []  # idempotent; test_nothing_to_recover has its words


def test_kill_during_revert(setup):
    s = setup(backends={"a": {}, "b": {"volume_driver": "vmtest_faulty:FaultyLocalDriver",
                                       "fail_on": "connect"}})
    killed = s.migrate(kill_at="create-destination:REVERTING")
    assert killed.returncode == -signal.SIGKILL
    assert s.volume_now()["status"] == "maintenance"
    recovered = s.recover()
    assert "resumed" in recovered.stdout_text
    migration = s.assert_consistent(expect_state="error")
    assert "injected failure of connect" in migration["error"]


def _children(pid):
    """The processes `pid` started (a dd, say): those whose parent it is in /proc."""
    found = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except (OSError, ValueError):  # not a process, or gone
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            found.add(int(entry))
    return found


def _kill_when_held(s, held_at, command=("migrate",), orphans=None):
    """kill -9 the command once its copy is held at `held_at` bytes; return the
    position the copy had reported.

    The copy is throttled to HOLD_BPS: it moves its first block
    (volume_dd_blocksize, from where this run started) at once, makes it
    durable and then waits an hour for the next, so the kill surely lands in
    the middle of the copy. Held means both reported (`progress_bytes`, from
    the copy's position) and recorded durable (`bytes_durable`, written after
    the block's sync): the position moves first, so a kill as soon as it is
    seen could land before the record. `orphans`, a set, receives the
    processes the command had started: they outlive it.
    """
    proc = s.migrate(wait=False) if command == ("migrate",) else s.cli(*command, wait=False)

    def held():
        row = s.migration_now() or {}
        return min(row.get("progress_bytes") or 0, row.get("bytes_durable") or 0) >= held_at

    try:
        wait_for(lambda: proc.poll() is not None or held())
        assert proc.poll() is None, f"it ended ({proc.returncode}) before its kill"
        position = s.migration_now()["progress_bytes"]
        if orphans is not None:
            orphans.update(_children(proc.pid))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=PATIENCE)
    assert proc.returncode == -signal.SIGKILL
    assert position == held_at  # held there: it cannot have gone further
    return position


@pytest.mark.parametrize("held_at", [2 * MiB, 5 * MiB, 7 * MiB], ids=["25%", "62%", "87%"])
def test_kill_during_copy_resumes_from_the_checkpoint(setup, held_at):
    size = 8 * MiB
    # The copy moves one block of `held_at` bytes, makes it durable, and is held
    # there until the kill; the recovery copies at full speed.
    s = setup(size=size, volume_copy_bps_limit=HOLD_BPS, volume_dd_blocksize=held_at,
              migration_checkpoint_size="1M")
    position = _kill_when_held(s, held_at)
    durable = s.migration_now()["bytes_durable"]
    assert 0 < durable <= size

    s.set_option("volume_copy_bps_limit", 0)
    s.recover()
    s.assert_consistent(expect_state="success")
    resumed = re.findall(r"the copy wrote (\d+) bytes \(from byte (\d+) of (\d+)\)", s.log())
    assert len(resumed) == 1, resumed
    written, start, total = map(int, resumed[0])
    assert total == size
    assert start == durable
    remaining = size - position
    # What the resumed copy actually wrote: the remaining bytes plus at most one
    # synced run (a block here) that was copied before the kill but not yet durable.
    assert written == size - start
    assert written <= remaining + held_at, (written, remaining)


def test_killed_twice_in_a_row(setup):
    size, block = 8 * MiB, 2 * MiB
    # Each run of the copy moves one block and is held there until its kill.
    s = setup(size=size, volume_copy_bps_limit=HOLD_BPS, volume_dd_blocksize=block)
    _kill_when_held(s, block)
    first_checkpoint = s.migration_now()["bytes_durable"]
    # The recovery itself dies in the middle of the resumed copy...
    _kill_when_held(s, first_checkpoint + block, command=("recover",))
    assert s.volume_now()["status"] == "maintenance"
    assert s.migration_now()["bytes_durable"] > first_checkpoint
    # ...and the next one finishes it (at full speed).
    s.set_option("volume_copy_bps_limit", 0)
    s.recover()
    s.assert_consistent(expect_state="success")


def test_nothing_to_recover(setup):
    s = setup()
    out = s.recover()
    assert "Nothing to recover" in out.stdout_text
    done = s.migrate()
    assert done.returncode == 0
    assert "Nothing to recover" in s.recover().stdout_text
    s.assert_consistent(expect_state="success")


def test_missing_flow_detail_is_rolled_back_with_a_reason(setup):
    s = setup()
    killed = s.migrate(kill_at="copy-data:RUNNING")
    assert killed.returncode == -signal.SIGKILL
    migration = s.migration_now()
    lose_flow(s.svc, migration["flow_uuid"])
    out = s.recover()
    assert "rolled back" in out.stdout_text
    ended = s.assert_consistent(expect_state="error")
    assert f"flow detail {migration['flow_uuid']} is missing" in ended["error"]


def test_two_recoveries_at_once_resume_the_flow_only_once(setup):
    # The copy is held after its first MiB until the kill.
    s = setup(size=4 * MiB, volume_copy_bps_limit=HOLD_BPS)
    _kill_when_held(s, MiB)
    s.set_option("volume_copy_bps_limit", 0)
    first, second = s.cli("recover", wait=False), s.cli("recover", wait=False)
    outputs = [p.communicate(timeout=PATIENCE)[0] for p in (first, second)]
    assert first.returncode == second.returncode == 0
    resumed = [o for o in outputs if ": resumed (" in o]
    assert len(resumed) == 1, outputs
    s.assert_consistent(expect_state="success")
    assert len(re.findall(r"the copy wrote", s.log())) == 1


def test_backend_gone_at_recovery_is_rolled_back_where_possible(setup, tmp_path):
    s = setup()
    killed = s.migrate(kill_at="copy-data:RUNNING")
    assert killed.returncode == -signal.SIGKILL
    migration = s.migration_now()
    # The administrator removed backend b before restarting.
    text = open(s.conf_path).read().replace("enabled_backends = a,b", "enabled_backends = a")
    open(s.conf_path, "w").write(text)
    out = s.recover()
    assert "rolled back" in out.stdout_text
    ended = s.migration_now()
    assert ended["state"] == "error"
    assert "backend b is not enabled in this service" in ended["error"]
    assert f"volume data {migration['id']} left on node1@b#b" in ended["error"]
    volume = s.volume_now()
    assert volume["status"] == "available" and volume["migration_status"] == "error"
    assert volume["host"] == "node1@a#a"
    assert sha256_of(volume["provider_location"]) == s.before
    # The destination it could not reach is kept, marked, and still hidden.
    hidden = [v for v in s.svc.list_volumes(include_hidden=True)
              if v["id"] not in (s.volume["id"], s.other["id"])]
    assert [(v["id"], v["status"]) for v in hidden] == [(migration["id"], "error")]
    assert migration["id"] not in [v["id"] for v in s.svc.list_volumes()]


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/loop-control"),
                    reason="loop devices need root and /dev/loop-control")
@pytest.mark.parametrize("method", ["kernel", "dd"])
def test_kill_during_a_copy_between_loop_devices(setup, tmp_path, method):
    size, block = 8 * MiB, 2 * MiB
    # The copy is held after its first block so that the kill lands in its middle...
    s = setup(size=size, volume_copy_bps_limit=HOLD_BPS, volume_dd_blocksize=block,
              copy_method=method,
              backends={"a": {"local_access": "block"}, "b": {"local_access": "block"}})
    state_dir = str(tmp_path / "state")
    orphans = set()
    _kill_when_held(s, block, orphans=orphans)
    # What it started (a dd, a losetup) has ended too.
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in orphans))
    s.set_option("volume_copy_bps_limit", 0)  # ...and the recovery need not wait
    leftover = subprocess.run(["losetup", "--list", "--noheadings", "--output", "BACK-FILE"],
                              capture_output=True, text=True).stdout
    assert state_dir in leftover  # the crash left the loop devices attached...
    s.recover()
    s.assert_consistent(expect_state="success")
    leftover = subprocess.run(["losetup", "--list", "--noheadings", "--output", "BACK-FILE"],
                              capture_output=True, text=True).stdout
    assert state_dir not in leftover  # ...and the resumed flow released them
