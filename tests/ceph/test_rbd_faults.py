"""Faults of a real Ceph cluster under a migration, and what each leaves behind.

The OSD stopped mid-copy, a pool reaching its quota mid-copy, bad credentials
or a wrong monitor at start, kill -9 during a live migration, a cancel of
one. Every librados operation of the backends under test is bounded by
``rados_connect_timeout`` (TIMEOUT here; the driver makes it librados's osd
and mon operation timeouts), so each fault ends the migration within a bound
derived from it, never a hang. The copy is held on purpose while the fault is
made (copy_gate for host copies, execute_gate or HeldRBDDriver for Ceph's
live migration), then let go into it.

Measured here (TIMEOUT = 3 s; from the fault to the migration's end):
- OSD stopped, host copy RBD -> RBD: 15 to 18 s: the copy's I/O times out,
  the writable destination's close makes three operations that time out,
  then its delete. The destination stays a leftover until the OSD is back;
  its delete then finds the image locked by this very process (the close
  could not release the lock) and breaks that lock once its watch has
  expired (osd_client_watch_timeout, 5 s in the test cluster).
- OSD stopped, live migration: 21 to 26 s: execute fails (each object's
  copy times out), the abort cannot reach the cluster, and the move is kept
  as the destination backend's leftover; `cleanup` (or the volume's next
  move) aborts it once the OSD is back. Once in CI librbd's execute did not
  end at all (300 s); the driver now gives up on an execute that has not
  moved for 2 timeouts when the cluster does not answer a read either. The
  "cleanup" case holds execute for good to make that happen every time.
- Pool quota: the cluster marks the pool full 2 to 5 s after it goes over
  (the manager reports usage every second); the next write then fails at
  once with EDQUOT (the driver writes with librados's "full try"; without
  it a write waits for the operation timeout). Host copy: 3 to 10 s, the
  rest is the destination's delete, which cannot run in a full pool (a
  delete writes too) and stays a leftover, with the reason, until the quota
  is lifted. Live migration: about 11 s; Ceph's abort cannot run in the
  full pool either.
- Bad key, unknown user, no caps on the pool: refused at start in under
  0.1 s; a monitor that does not answer: TIMEOUT seconds.
- kill -9 during a live migration: `volmigrate recover` takes it up and
  commits it in 3 to 7 s (librbd first waits for the dead client's lock).
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from oslo_config import cfg

from vmtest import (HOLDABLE, PATIENCE, MiB, host, volume_sha256, wait_for, write_config,
                    write_volume)
from volmigrate.drivers import rbd_migration
from volmigrate.drivers.rbd import RBDDriver
from volmigrate.engine import MigrationService
from volmigrate.engine.exceptions import ConfigError

CLI = os.path.join(os.path.dirname(sys.executable), "volmigrate")
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 3  # rados_connect_timeout of the backends under test
SIZE = 32 * MiB
# A failure path makes at most this many librados calls one after another,
# each bounded by TIMEOUT (the slowest: the close of a writable image, 3).
OPS_IN_A_ROW = 8
SLACK = 10.0  # the flow's own work and polls, on a loaded machine


def _image(volume: dict) -> str:
    return f"volume-{volume.get('name_id') or volume['id']}"


def _hidden(svc, volume_id: str) -> list[dict]:
    return [v for v in svc.list_volumes(include_hidden=True) if v["id"] != volume_id]


def _assert_intact(svc, volume: dict, before: str, backend: str, rbd_images,
                   backends: dict) -> None:
    """The volume is available on `backend`, its data unchanged, its image in its own
    pool only, no migration left in the cluster, no hidden row left in the database."""
    now = svc.get_volume(volume["id"])
    assert now["host"] == f"{host(backend)}#{backend}"
    assert now["status"] == "available"
    assert volume_sha256(svc, now) == before
    for name, section in backends.items():
        expected = [_image(now)] if name == backend else []
        assert rbd_images.listed(section["rbd_pool"]) == expected, name
        assert rbd_images.migration(section["rbd_pool"], _image(now)) is None
    assert _hidden(svc, volume["id"]) == []


def _held_live_migration(make_service, rbd_backends, execute_gate, **options):
    """A volume moved r1 -> r2 by Ceph's live migration, its execute held after the
    first object; (service, backends, volume, its sha256, the migrate response)."""
    backends = rbd_backends("r1", "r2", **options)
    svc = make_service(backends=backends)
    volume = svc.create_volume(SIZE, host("r1"))
    before = write_volume(svc, volume)
    response = svc.migrate_volume(volume["id"], host("r2"))
    execute_gate.wait_held()
    return svc, backends, volume, before, response


def _held_copy_to_rbd(make_service, rbd_backends, copy_gate):
    """A host copy of a volume from local backend a to r1, held at its first durable
    MiB; (service, backends, volume, its sha256, the migrate response)."""
    backends = {"a": {}, **rbd_backends("r1", rados_connect_timeout=TIMEOUT)}
    svc = make_service(backends=backends, **HOLDABLE)
    volume = svc.create_volume(SIZE, host("a"))
    before = write_volume(svc, volume)
    response = copy_gate.migrate(svc, volume["id"], host("r1"))
    return svc, backends, volume, before, response


# -- 1. the OSD stopped mid-copy ----------------------------------------------------
def test_osd_stopped_during_a_host_copy(make_service, rbd_backends, copy_gate, osd,
                                        rbd_images):
    backends = rbd_backends("r1", "r2", rados_connect_timeout=TIMEOUT)
    svc = make_service(backends=backends, **HOLDABLE)
    volume = svc.create_volume(SIZE, host("r1"))
    before = write_volume(svc, volume)
    response = copy_gate.migrate(svc, volume["id"], host("r2"), force_host_copy=True)

    osd.stop()
    started = time.monotonic()
    copy_gate.release(response.migration_id)
    migration = svc.wait(response.migration_id, PATIENCE)
    detected = time.monotonic() - started
    assert migration["state"] == "error"
    assert "[errno 110] RBD operation timeout" in migration["error"], migration["error"]
    assert detected < OPS_IN_A_ROW * TIMEOUT + SLACK, detected
    now = svc.get_volume(volume["id"])
    assert (now["host"], now["status"], now["migration_status"]) == (
        f"{host('r1')}#r1", "available", "error")
    # The destination could not be deleted without its OSD: kept, and said so.
    assert re.search(rf"could not be deleted: .*no answer within rados_connect_timeout = "
                     rf"{TIMEOUT} s.*`volmigrate recover` or `volmigrate cleanup` will try "
                     rf"again", migration["error"]), migration["error"]
    print(f"OSD stopped during a host copy: the migration ended {detected:.1f} s later")
    [leftover] = _hidden(svc, volume["id"])
    assert (leftover["host"], leftover["status"]) == (f"{host('r2')}#r2", "error")

    osd.start()
    results = svc.clean_up_leftovers()
    assert [r["action"] for r in results] == ["leftover removed"], results
    _assert_intact(svc, volume, before, "r1", rbd_images, backends)


@pytest.mark.parametrize("then", ["cleanup", "migrate again"])
def test_osd_stopped_during_a_live_migration(then, make_service, rbd_backends, execute_gate,
                                             osd, rbd_images):
    svc, backends, volume, before, response = _held_live_migration(
        make_service, rbd_backends, execute_gate, rados_connect_timeout=TIMEOUT)
    assert rbd_images.migration(backends["r2"]["rbd_pool"], _image(volume)) == "executing"

    osd.stop()
    started = time.monotonic()
    if then == "migrate again":
        execute_gate.release()  # into the outage: librbd's own timeouts fail it
    # else execute stays held, as librbd's once stayed: the driver gives it up
    migration = svc.wait(response.migration_id, PATIENCE)
    detected = time.monotonic() - started
    assert migration["state"] == "error"
    assert migration["case"] == "driver-assisted"
    if then == "cleanup":
        assert re.search(r"execute of \S+ has not moved for \d+ s and the cluster does not "
                         r"answer: .*no answer within rados_connect_timeout = 3 s",
                         migration["error"]), migration["error"]
    assert detected < 2 * OPS_IN_A_ROW * TIMEOUT + SLACK, detected
    print(f"OSD stopped during a live migration: the migration ended {detected:.1f} s later")
    # Nothing could abort Ceph's migration: it is recorded as the destination's leftover.
    assert "could not be aborted" in migration["error"], migration["error"]
    assert "kept as a leftover" in migration["error"], migration["error"]
    [leftover] = _hidden(svc, volume["id"])
    assert (leftover["host"], leftover["status"]) == (f"{host('r2')}#r2", "error")
    assert svc.get_volume(volume["id"])["host"] == f"{host('r1')}#r1"

    osd.start()
    execute_gate.release()
    # Ceph's own record: still half way, the image in neither pool's listing but r2's.
    assert rbd_images.migration(backends["r2"]["rbd_pool"], _image(volume)) is not None
    assert rbd_images.listed(backends["r1"]["rbd_pool"]) == []
    if then == "cleanup":  # `volmigrate cleanup`, or the recovery of the next start
        results = svc.clean_up_leftovers()
        assert [r["action"] for r in results] == ["leftover removed"], results
        _assert_intact(svc, volume, before, "r1", rbd_images, backends)
    else:  # the next move aborts the one left in the cluster first, then moves
        again = svc.wait(svc.migrate_volume(volume["id"], host("r2")).migration_id, PATIENCE)
        assert again["state"] == "success", again["error"]
        _assert_intact(svc, volume, before, "r2", rbd_images, backends)


# -- 2. a pool quota reached mid-copy ----------------------------------------------------
def test_pool_quota_reached_during_a_host_copy(make_service, rbd_backends, copy_gate,
                                               pool_quota, rbd_images):
    svc, backends, volume, before, response = _held_copy_to_rbd(
        make_service, rbd_backends, copy_gate)
    pool = backends["r1"]["rbd_pool"]
    # The copy holds at its first durable MiB: the pool already has more than this.
    print(f"quota marked full after {pool_quota.set(pool, 512 * 1024):.1f} s")

    started = time.monotonic()
    copy_gate.release(response.migration_id)
    migration = svc.wait(response.migration_id, PATIENCE)
    detected = time.monotonic() - started
    assert migration["state"] == "error"
    assert "disk quota exceeded" in migration["error"].lower(), migration["error"]
    # The delete of the destination waits for the pool (one operation timeout) and
    # says why it cannot go on.
    assert f"pool {pool} is full: its quota (max_bytes 524288) is reached" \
        in migration["error"], migration["error"]
    assert detected < OPS_IN_A_ROW * TIMEOUT + SLACK, detected
    print(f"quota reached during a host copy: the migration ended {detected:.1f} s later")
    now = svc.get_volume(volume["id"])
    assert (now["host"], now["status"], now["migration_status"]) == (
        f"{host('a')}#a", "available", "error")
    assert volume_sha256(svc, now) == before

    pool_quota.clear(pool)
    results = svc.clean_up_leftovers()
    assert [r["action"] for r in results] == ["leftover removed"], results
    assert rbd_images.listed(pool) == []
    assert _hidden(svc, volume["id"]) == []


def test_pool_quota_reached_during_a_live_migration(make_service, rbd_backends, execute_gate,
                                                    pool_quota, rbd_images):
    svc, backends, volume, before, response = _held_live_migration(
        make_service, rbd_backends, execute_gate, rados_connect_timeout=TIMEOUT)
    # held: its first object (4 MiB) is in r2
    pool_quota.set(backends["r2"]["rbd_pool"], 1 * MiB)

    started = time.monotonic()
    execute_gate.release()
    migration = svc.wait(response.migration_id, PATIENCE)
    detected = time.monotonic() - started
    assert migration["state"] == "error"
    assert re.search(rf"rbd migration execute of {_image(volume)} failed: Disk quota exceeded "
                     rf"\(errno 122\): pool {backends['r2']['rbd_pool']} is full: its quota "
                     rf"\(max_bytes 1048576\) is reached", migration["error"]), migration["error"]
    assert detected < OPS_IN_A_ROW * TIMEOUT + SLACK, detected
    print(f"quota reached during a live migration: the migration ended {detected:.1f} s "
          f"later")
    # Ceph's abort writes in the destination pool too: while it is full the move stays,
    # recorded as the destination's leftover, and its abort waits for room.
    assert "kept as a leftover" in migration["error"], migration["error"]
    assert svc.get_volume(volume["id"])["host"] == f"{host('r1')}#r1"
    pool_quota.clear(backends["r2"]["rbd_pool"])
    results = svc.clean_up_leftovers()
    assert [r["action"] for r in results] == ["leftover removed"], results
    _assert_intact(svc, volume, before, "r1", rbd_images, backends)


# -- 3. bad credentials, a wrong monitor: refused at start, within a bound ------------
def _wrong(kind: str, ceph, tmp_path) -> dict:
    """Backend options that are wrong in one way."""
    if kind == "keyring":  # a key the cluster never issued, for client.admin
        path = tmp_path / "wrong.keyring"
        path.write_text("[client.admin]\n\tkey = AQBgZ2VmAAAAABAAwn8X1Vb9pvT3b3cm2Xo+9w==\n")
        return {"rbd_keyring_conf": str(path)}
    if kind == "user":
        return {"rbd_user": "nobody"}
    if kind == "monitor":  # the cluster's ceph.conf with another monitor port
        conf = tmp_path / "ceph.conf"
        text = ceph.conf.read_text()
        conf.write_text(re.sub(r"(?m)^mon_host = .*$",
                               f"mon_host = v2:127.0.0.1:{ceph.mon_port + 1}", text))
        return {"rbd_ceph_conf": str(conf)}
    raise ValueError(kind)


CAUSES = {"keyring": "permission denied: check rbd_user and rbd_keyring_conf",
          "user": "permission denied: check rbd_user and rbd_keyring_conf",
          "monitor": "no monitor answered at v2:127.0.0.1:",
          "caps": "permission denied: check rbd_user's caps on the pool"}


@pytest.mark.parametrize("kind", ["keyring", "user", "monitor", "caps"])
def test_wrong_credentials_or_monitor_refused_at_start(kind, make_service, rbd_backends, ceph,
                                                       tmp_path):
    backends = rbd_backends("r1", rados_connect_timeout=TIMEOUT)
    if kind == "caps":  # a real user, with rights on another pool only
        other = rbd_backends("other")["other"]["rbd_pool"]
        name = f"only-{other}"
        keyring = ceph.create_user(name, [other])
        backends["r1"].update(rbd_user=name, rbd_keyring_conf=str(keyring))
    else:
        backends["r1"].update(_wrong(kind, ceph, tmp_path))
    bound = TIMEOUT + 5.0  # one connection attempt, bounded by rados_connect_timeout

    started = time.monotonic()
    with pytest.raises(ConfigError) as refused:
        make_service(backends=backends)
    elapsed = time.monotonic() - started
    message = str(refused.value)
    assert elapsed < bound, elapsed
    print(f"{kind}: refused in {elapsed:.2f} s: {message}")
    assert "\n" not in message
    assert message.startswith("backend r1: "), message
    assert f"Ceph cluster ceph ({backends['r1']['rbd_ceph_conf']}" in message, message
    assert CAUSES[kind] in message, message

    # The command says the same in one line, exit status 1, as fast.
    conf = tmp_path / "volmigrate.conf"  # the file make_service wrote
    started = time.monotonic()
    proc = subprocess.run([CLI, "--config-file", str(conf), "recover"], capture_output=True,
                          text=True, timeout=PATIENCE)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"Ceph cluster ceph ({backends['r1']['rbd_ceph_conf']}" in lines[0], lines[0]
    assert CAUSES[kind] in lines[0], lines[0]
    assert elapsed < bound + 10.0, elapsed  # plus the command's own start-up


# -- 4. kill -9 during a live migration ---------------------------------------------------
HOLD_ENV = "VMTEST_HOLD_EXECUTE"


class HeldRBDDriver(RBDDriver):
    """The rbd driver, except that in a process whose $VMTEST_HOLD_EXECUTE names a
    file, a live migration's execute waits after its first object for as long as
    that file exists (and says so by creating <file>.held): a test double, so
    that a `volmigrate` process is killed in the middle of an execute, which
    otherwise moves 256 MiB in 1 to 2 s and ignores librbd's QoS limits."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        hold = os.environ.get(HOLD_ENV)
        if hold:
            base = rbd_migration._Execute

            class HeldExecute(base):
                def _progress(self, offset: int, total: int) -> int:
                    answer = base._progress(self, offset, total)
                    if offset > 0 and os.path.exists(hold):
                        open(hold + ".held", "w").close()
                        while os.path.exists(hold):
                            time.sleep(0.05)
                    return answer

            rbd_migration._Execute = HeldExecute


class LiveMigrationSetup:
    """A volume with data on r1 of a config file that `volmigrate` processes run."""

    def __init__(self, tmp_path, backends: dict) -> None:
        self.tmp_path, self.backends = tmp_path, backends
        self.conf_path = write_config(tmp_path, {
            name: dict(section, volume_driver="test_rbd_faults:HeldRBDDriver")
            for name, section in backends.items()})
        self.svc = self.service()
        self.svc.start(recover=False)
        self.volume = self.svc.create_volume(64 * MiB, host("r1"), name="precious")
        self.before = write_volume(self.svc, self.volume, [(0, 48 * MiB)])
        self.svc.stop()
        self.svc = self.service()  # read-only from here: the CLI processes run the flows
        self.svc.connect()

    def service(self) -> MigrationService:
        conf = cfg.ConfigOpts()
        conf(["--config-file", self.conf_path])
        return MigrationService(conf)

    def cli(self, *args: str, **env: str):
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [os.path.dirname(os.path.abspath(__file__)), TESTS_DIR]))
        for name in ("VOLMIGRATE_TEST_KILL_AT", HOLD_ENV):
            environment.pop(name, None)
        environment.update(env)
        return subprocess.Popen([CLI, "--config-file", self.conf_path, *args],
                                env=environment, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def migrate(self, **env: str):
        return self.cli("migrate", self.volume["id"], host("r2"), "--lock-volume", **env)

    def pools(self) -> tuple[str, str]:
        return self.backends["r1"]["rbd_pool"], self.backends["r2"]["rbd_pool"]


def _killed(proc) -> None:
    proc.kill()
    proc.communicate(timeout=PATIENCE)
    assert proc.returncode == -signal.SIGKILL, proc.returncode


def _recover_and_check(s: LiveMigrationSetup, rbd_images) -> dict:
    """`volmigrate recover`, then: committed (on r2, success) or aborted (on r1, error),
    the data intact either way, never half (the image in both pools, a migration left
    in the cluster, a hidden row)."""
    started = time.monotonic()
    recovered = s.cli("recover")
    out, err = recovered.communicate(timeout=PATIENCE)
    assert recovered.returncode == 0, err + out
    took = time.monotonic() - started
    migration = s.svc.db.latest_migration(s.volume["id"])
    volume = s.svc.get_volume(s.volume["id"])
    assert migration["state"] in ("success", "error"), migration
    where = "r2" if migration["state"] == "success" else "r1"
    assert volume["host"] == f"{host(where)}#{where}", (volume["host"], migration["error"])
    assert (volume["status"], volume["migration_status"]) == ("available", migration["state"])
    r1, r2 = s.pools()
    image = _image(volume)
    assert rbd_images.listed(r1) == ([image] if where == "r1" else [])
    assert rbd_images.listed(r2) == ([image] if where == "r2" else [])
    assert rbd_images.migration(r2, image) is None
    assert _hidden(s.svc, s.volume["id"]) == []
    svc = s.service()
    svc.start(recover=False)
    try:
        assert volume_sha256(svc, volume) == s.before
    finally:
        svc.stop()
    done = s.cli("recover")
    assert "Nothing to recover" in done.communicate(timeout=PATIENCE)[0]
    return dict(migration, recover_seconds=took)


@pytest.mark.parametrize("kill_at", ["start-driver-move:SUCCESS", "wait-for-driver-move:RUNNING",
                                     "update-volume-host:RUNNING"])
def test_kill_at_a_step_of_a_live_migration(kill_at, rbd_backends, rbd_images, tmp_path):
    s = LiveMigrationSetup(tmp_path, rbd_backends("r1", "r2"))
    proc = s.migrate(VOLMIGRATE_TEST_KILL_AT=kill_at)
    proc.communicate(timeout=PATIENCE)
    assert proc.returncode == -signal.SIGKILL, proc.returncode
    _, r2 = s.pools()
    state = rbd_images.migration(r2, _image(s.volume))
    if kill_at == "update-volume-host:RUNNING":  # committed, not recorded yet
        assert state is None and rbd_images.listed(r2) == [_image(s.volume)]
    else:  # prepared; execute had just been started in its thread
        assert state in ("prepared", "executing"), state
    migration = _recover_and_check(s, rbd_images)
    assert migration["state"] == "success", migration["error"]  # the move is taken up
    print(f"{kill_at}: recovered in {migration['recover_seconds']:.1f} s")


def test_kill_in_the_middle_of_a_live_migration_execute(rbd_backends, rbd_images, tmp_path):
    s = LiveMigrationSetup(tmp_path, rbd_backends("r1", "r2"))
    hold = tmp_path / "hold-execute"
    hold.touch()
    proc = s.migrate(**{HOLD_ENV: str(hold)})
    try:
        wait_for(lambda: proc.poll() is not None or os.path.exists(f"{hold}.held"))
        assert proc.poll() is None, proc.communicate()
        r1, r2 = s.pools()
        assert rbd_images.migration(r2, _image(s.volume)) == "executing"
        assert rbd_images.listed(r1) == [] and rbd_images.listed(r2) == [_image(s.volume)]
    finally:
        _killed(proc)
    migration = _recover_and_check(s, rbd_images)
    assert migration["state"] == "success", migration["error"]
    print(f"mid-execute: recovered in {migration['recover_seconds']:.1f} s")


# -- 5. cancel of a running live migration ------------------------------------------------
def test_cancel_of_a_running_live_migration(make_service, rbd_backends, execute_gate,
                                            rbd_images):
    svc, backends, volume, before, response = _held_live_migration(
        make_service, rbd_backends, execute_gate)
    assert rbd_images.migration(backends["r2"]["rbd_pool"], _image(volume)) == "executing"
    assert svc.get_volume(volume["id"])["migration_status"] == "migrating"

    svc.cancel_migration(volume["id"])
    # librbd's execute cannot be stopped: the abort waits for it, then undoes it.
    execute_gate.release()
    migration = svc.wait(response.migration_id, PATIENCE)
    assert migration["state"] == "error"
    assert migration["error"] == "cancelled by the administrator", migration["error"]
    now = svc.get_volume(volume["id"])
    assert now["migration_status"] == "error"
    _assert_intact(svc, volume, before, "r1", rbd_images, backends)


# -- 6. the destination pool deleted during a live migration ---------------------------
def test_destination_pool_deleted_during_a_live_migration(make_service, rbd_backends,
                                                          execute_gate, ceph, rbd_images):
    svc, backends, volume, before, response = _held_live_migration(
        make_service, rbd_backends, execute_gate, rados_connect_timeout=TIMEOUT)
    source_pool, dest_pool = backends["r1"]["rbd_pool"], backends["r2"]["rbd_pool"]
    assert rbd_images.listed(source_pool) == []  # prepared: the source is in the trash

    ceph.delete_pool(dest_pool)
    execute_gate.release()
    migration = svc.wait(response.migration_id, PATIENCE)
    assert migration["state"] == "error"
    assert f"its destination pool {dest_pool} was deleted" in migration["error"], \
        migration["error"]
    # Ceph's abort cannot run without its destination (ENOENT), and `rbd trash restore`
    # refuses a migration's source: it once stayed in the trash, the volume "available"
    # and impossible to open. The driver puts it back as it was at the prepare.
    now = svc.get_volume(volume["id"])
    assert (now["host"], now["status"], now["migration_status"]) == (
        f"{host('r1')}#r1", "available", "error")
    assert rbd_images.listed(source_pool) == [_image(now)]
    assert rbd_images.trash(source_pool) == []
    assert rbd_images.migration(source_pool, _image(now)) is None
    assert volume_sha256(svc, now) == before
    assert _hidden(svc, volume["id"]) == []


def test_destination_pool_deleted_during_a_host_copy(make_service, rbd_backends, copy_gate,
                                                     ceph):
    svc, backends, volume, before, response = _held_copy_to_rbd(
        make_service, rbd_backends, copy_gate)
    pool = backends["r1"]["rbd_pool"]

    ceph.delete_pool(pool)
    copy_gate.release(response.migration_id)
    migration = svc.wait(response.migration_id, PATIENCE)
    assert migration["state"] == "error"
    # librbd says "permission" (EPERM) or "not found": the error says what happened.
    assert re.search(rf"{pool}/volume-{response.migration_id}: .*: its pool was deleted",
                     migration["error"]), migration["error"]
    now = svc.get_volume(volume["id"])
    assert (now["host"], now["status"], now["migration_status"]) == (
        f"{host('a')}#a", "available", "error")
    assert volume_sha256(svc, now) == before
    # The destination went with its pool: nothing is left to remove, and no leftover
    # row is kept (it once was, "could not be deleted: pool ... does not exist", for ever).
    assert "could not be deleted" not in migration["error"], migration["error"]
    assert _hidden(svc, volume["id"]) == []
