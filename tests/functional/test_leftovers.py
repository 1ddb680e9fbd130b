"""No leftovers after a roll-back: what a migration could not remove is removed later.

A roll-back that cannot delete a migration's destination (its backend is not
enabled, or the delete fails) keeps the hidden destination row as the record
(status `error`); the next `volmigrate recover`, or `volmigrate cleanup`,
deletes the data through the driver and then the row once that works, and
says what it removed and what it could not. Real CLI processes, real kill -9,
real files (one made immutable with chattr), real SQLite.
"""

import datetime
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
HIDDEN = "volmigrate-internal"  # internal_project_id's default


class World:
    """Volumes on backend `a` of a config file the test edits as an administrator would."""

    def __init__(self, tmp_path, backends=None, **defaults) -> None:
        self.tmp_path = tmp_path
        self.conf_path = write_config(tmp_path, backends, **defaults)
        self.svc = self.service()  # reads the database, as `volmigrate show` would
        self.svc.connect()

    def service(self, conf_path=None) -> MigrationService:
        conf = cfg.ConfigOpts()
        conf(["--config-file", conf_path or self.conf_path])
        return MigrationService(conf)

    def create(self, size, name="precious"):
        svc = self.service()
        svc.start(recover=False)
        try:
            volume = svc.create_volume(size, host("a"), name=name)
        finally:
            svc.stop()
        return volume, fill_random(volume["provider_location"], size)

    def cli(self, *args, kill_at=None, wait=True, conf_path=None):
        env = dict(os.environ, PYTHONPATH=TESTS_DIR)  # for the faulty test driver
        env.pop("VOLMIGRATE_TEST_KILL_AT", None)
        if kill_at:
            env["VOLMIGRATE_TEST_KILL_AT"] = kill_at
        proc = subprocess.Popen([CLI, "--config-file", conf_path or self.conf_path, *args],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        if wait:
            proc.out, proc.err = proc.communicate(timeout=PATIENCE)
        return proc

    def enable(self, *backends: str) -> None:
        text = re.sub(r"(?m)^enabled_backends = .*$", "enabled_backends = " + ",".join(backends),
                      open(self.conf_path).read())
        open(self.conf_path, "w").write(text)

    def hidden(self) -> list[dict]:
        return [v for v in self.svc.list_volumes(include_hidden=True)
                if v["project_id"] == HIDDEN]

    def files(self, backend: str) -> list[str]:
        folder = self.tmp_path / "state" / "volumes" / backend
        return sorted(os.listdir(folder)) if folder.exists() else []

    def dest_file(self, migration_id: str, backend: str = "b") -> str:
        return str(self.tmp_path / "state" / "volumes" / backend / f"volume-{migration_id}")


def kill_mid_copy(world, volume, size):
    """kill -9 a `migrate --lock-volume` whose copy is held (HOLD_BPS) after its
    first MiB, once that MiB is reported."""
    proc = world.cli("migrate", volume["id"], host("b"), "--lock-volume", wait=False)
    try:
        wait_for(lambda: proc.poll() is not None
                 or ((world.svc.db.latest_migration(volume["id"]) or {})
                     .get("progress_bytes") or 0) >= MiB)
        assert proc.poll() is None, f"it ended ({proc.returncode}) before its kill"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=PATIENCE)
    assert proc.returncode == -signal.SIGKILL
    migration = world.svc.db.latest_migration(volume["id"])
    assert 0 < migration["progress_bytes"] < size  # the copy was cut short
    return migration


def assert_restored(world, volume, before):
    now = world.svc.get_volume(volume["id"])
    assert (now["host"], now["status"], now["migration_status"]) == (
        "node1@a#a", "available", "error")
    assert sha256_of(now["provider_location"]) == before


@pytest.fixture
def immutable():
    """chattr +i on files (root cannot delete them either), undone at the end."""
    made = []

    def make(path, on=True):
        subprocess.run(["chattr", "+i" if on else "-i", path], check=True)
        if on:
            made.append(path)
    yield make
    for path in made:
        subprocess.run(["chattr", "-i", path], check=False)


def test_destination_on_a_disabled_backend_is_removed_once_it_is_back(tmp_path):
    # The copy is held after 1 MiB (HOLD_BPS): it cannot end before the kill.
    size = 4 * MiB
    world = World(tmp_path, volume_copy_bps_limit=HOLD_BPS)
    volume, before = world.create(size)
    migration = kill_mid_copy(world, volume, size)
    partial = world.dest_file(migration["id"])
    assert os.path.exists(partial)

    world.enable("a")  # the administrator disabled the destination backend, then recovers
    recovered = world.cli("recover")
    assert recovered.returncode == 0, recovered.err
    assert "rolled back" in recovered.out
    ended = world.svc.get_migration(migration["id"])
    assert ended["state"] == "error"
    assert (f"volume data {migration['id']} left on node1@b#b, whose backend b is not "
            f"enabled here; `volmigrate recover` or `volmigrate cleanup` will remove it "
            f"once backend b is enabled") in ended["error"]
    assert_restored(world, volume, before)
    # The record of what is left: the hidden row, status error, and the data.
    assert [(v["id"], v["status"]) for v in world.hidden()] == [(migration["id"], "error")]
    assert os.path.exists(partial)

    # While the backend is disabled, cleanup says what it could not remove, and fails.
    kept = world.cli("cleanup")
    assert kept.returncode == 1, kept.out + kept.err
    assert kept.err.strip() == (
        f"Migration {migration['id']} of volume {volume['id']}: leftover kept (its data on "
        f"node1@b#b stays: backend b is not enabled here; `volmigrate recover` or "
        f"`volmigrate cleanup` removes it once it is)")
    assert os.path.exists(partial) and len(world.hidden()) == 1

    world.enable("a", "b")  # back: the next recover removes it (as cleanup would)
    done = world.cli("recover")
    assert done.returncode == 0, done.err
    assert done.out.splitlines() == [
        f"Migration {migration['id']} of volume {volume['id']}: leftover removed (the data it "
        f"left on node1@b#b was deleted)"]
    assert world.hidden() == [] and world.files("b") == []
    assert_restored(world, volume, before)

    # Nothing left to do.
    again = world.cli("cleanup")
    assert (again.returncode, again.out, again.err) == (
        0, "Nothing to clean up: no migration left data behind.\n", "")


def test_a_failed_delete_is_reported_and_retried(tmp_path, immutable):
    size = 16 * MiB
    world = World(tmp_path)
    volume, before = world.create(size)
    killed = world.cli("migrate", volume["id"], host("b"), "--lock-volume",
                       kill_at="copy-data:RUNNING")
    assert killed.returncode == -signal.SIGKILL
    migration = world.svc.db.latest_migration(volume["id"])
    partial = world.dest_file(migration["id"])
    immutable(partial)  # rm fails with EPERM, even for root

    # The flow is lost, so recovery rolls back by hand and cannot delete the destination.
    lose_flow(world.svc, migration["flow_uuid"])
    recovered = world.cli("recover")
    assert recovered.returncode == 0, recovered.err
    error = world.svc.get_migration(migration["id"])["error"]
    # One wording whoever removes it (the flow's revert or recovery's roll-back).
    assert f"destination {migration['id']} on node1@b#b could not be deleted: " in error
    assert "Operation not permitted" in error
    assert "`volmigrate recover` or `volmigrate cleanup` will try again" in error
    assert_restored(world, volume, before)
    assert [(v["id"], v["status"]) for v in world.hidden()] == [(migration["id"], "error")]

    failed = world.cli("cleanup")
    assert failed.returncode == 1
    assert failed.out == ""
    [line] = failed.err.splitlines()
    assert line.startswith(f"Migration {migration['id']} of volume {volume['id']}: leftover "
                           f"kept (deleting its data on node1@b#b failed: ")
    assert "Operation not permitted" in line and line.endswith("will try again)")
    assert [(v["id"], v["status"]) for v in world.hidden()] == [(migration["id"], "error")]

    immutable(partial, on=False)
    done = world.cli("cleanup")
    assert done.returncode == 0, done.err
    assert "leftover removed" in done.out
    assert world.hidden() == [] and world.files("b") == []
    assert_restored(world, volume, before)


def faulty_world(tmp_path, **defaults):
    """Backend c fails to connect and to delete: every migration to it leaves its
    destination behind (the flow's revert cannot delete it). `fixed.conf` is the
    same configuration once c works again."""
    faulty = {"volume_driver": "vmtest_faulty:FaultyLocalDriver",
              "fail_on": "connect,delete"}
    fixed = write_config(tmp_path, {"a": {}, "b": {}, "c": {}}, **defaults)
    os.rename(fixed, tmp_path / "fixed.conf")
    world = World(tmp_path, {"a": {}, "b": {}, "c": faulty}, **defaults)
    world.fixed_conf = str(tmp_path / "fixed.conf")
    return world


def leave_behind(world, svc, count):
    """`count` volumes whose migration to c failed and left data there."""
    left = []
    for i in range(count):
        volume = svc.create_volume(MiB, host("a"), name=f"v{i}")
        migration = svc.wait(svc.migrate_volume(volume["id"], host("c")).migration_id,
                             PATIENCE)
        assert migration["state"] == "error"
        assert "injected failure of connect" in migration["error"]
        left.append((volume, migration))
    assert sorted((v["id"], v["status"]) for v in world.hidden()) == sorted(
        (m["id"], "error") for _, m in left)
    assert world.files("c") == sorted(f"volume-{m['id']}" for _, m in left)
    return left


def test_cleanup_never_touches_a_running_migration(tmp_path):
    world = faulty_world(tmp_path, volume_copy_bps_limit=HOLD_BPS)
    svc = world.service()
    svc.start()
    try:
        [(old, failed)] = leave_behind(world, svc, 1)
        # A migration that runs in this process, its copy held (HOLD_BPS) after
        # its first MiB until the abort below, however long cleanup takes.
        volume = svc.create_volume(4 * MiB, host("a"))
        fill_random(volume["provider_location"], 4 * MiB)
        response = svc.migrate_volume(volume["id"], host("b"))
        wait_for(lambda: svc.get_migration_progress(volume["id"])["bytes_copied"] >= MiB)
        running = world.dest_file(response.migration_id)
        assert os.path.exists(running)

        # The failed migration's data goes; the running one's destination stays.
        done = world.cli("cleanup", conf_path=world.fixed_conf)
        assert done.returncode == 0, done.err
        assert done.out.splitlines() == [
            f"Migration {failed['id']} of volume {old['id']}: leftover removed (the data "
            f"it left on node1@c#c was deleted)"]
        assert world.files("c") == []
        assert [(v["id"], v["status"]) for v in world.hidden()] == [
            (response.migration_id, "available")]
        assert os.path.exists(running)
        assert svc.get_migration(response.migration_id)["state"] in ("pending", "running")

        ended = svc.abort_migration(response.migration_id)
        assert ended["state"] == "error"
        assert world.hidden() == [] and world.files("b") == []
    finally:
        for migration in svc.list_migrations():  # a held copy, if a check above failed
            if migration["state"] in ("pending", "running"):
                svc.abort_migration(migration["id"])
        svc.stop()


def test_two_cleanups_at_once_remove_each_leftover_once(tmp_path):
    world = faulty_world(tmp_path)
    svc = world.service()
    svc.start()
    try:
        left = leave_behind(world, svc, 4)
    finally:
        svc.stop()
    first, second = (world.cli("cleanup", wait=False, conf_path=world.fixed_conf)
                     for _ in range(2))
    outputs = [p.communicate(timeout=PATIENCE) for p in (first, second)]
    assert first.returncode == second.returncode == 0, outputs
    removed = [line for out, _ in outputs for line in out.splitlines()
               if "leftover removed" in line]
    assert sorted(removed) == sorted(
        f"Migration {m['id']} of volume {v['id']}: leftover removed (the data it left on "
        f"node1@c#c was deleted)" for v, m in left)
    assert all(err == "" for _, err in outputs)
    assert world.hidden() == [] and world.files("c") == []
    for volume, _ in left:
        assert world.svc.get_volume(volume["id"])["status"] == "available"


def test_the_row_of_a_cleanup_killed_while_deleting_is_taken_over(tmp_path):
    world = faulty_world(tmp_path)
    svc = world.service()
    svc.start()
    try:
        [(volume, migration)] = leave_behind(world, svc, 1)
    finally:
        svc.stop()
    # A row another cleanup has just claimed (`deleting`; the claim's time is
    # updated_at, UTC) is its to remove: this one leaves it alone.
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert world.svc.db.update_volume(migration["id"], {"status": "deleting",
                                                        "updated_at": now})
    busy = world.cli("cleanup", conf_path=world.fixed_conf)
    assert (busy.returncode, busy.err) == (0, ""), busy.err
    assert busy.out == (f"Migration {migration['id']} of volume {volume['id']}: leftover "
                        f"skipped (another process is removing it)\n")
    assert world.files("c") == [f"volume-{migration['id']}"]
    # What a cleanup killed between its claim and its delete leaves: a claim
    # an hour old. The next cleanup takes it over.
    assert world.svc.db.update_volume(migration["id"], {
        "updated_at": now - datetime.timedelta(hours=1)})
    done = world.cli("cleanup", conf_path=world.fixed_conf)
    assert done.returncode == 0, done.err
    assert "leftover removed" in done.out
    assert world.hidden() == [] and world.files("c") == []
