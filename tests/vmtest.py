"""Fixtures: a real service on real files in a temporary state_path."""

from __future__ import annotations

import hashlib
import os
import textwrap
import warnings

import pytest

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from oslo_config import cfg  # noqa: E402
from oslo_messaging.notify import _impl_test as notify_test  # noqa: E402

from volmigrate.engine import MigrationService  # noqa: E402

MiB = 1024 * 1024
NODE = "node1"
IS_ROOT = os.geteuid() == 0
HAS_LOOP = IS_ROOT and os.path.exists("/dev/loop-control")


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def fill_random(path: str, size: int) -> str:
    """Write random data over the whole volume file; return its sha256."""
    with open(path, "r+b") as f:
        remaining = size
        while remaining:
            n = min(remaining, 4 * MiB)
            f.write(os.urandom(n))
            remaining -= n
    return sha256_of(path)


def write_config(tmp_path, backends: dict[str, dict] | None = None, **defaults) -> str:
    backends = backends or {"a": {}, "b": {}}
    options = {"state_path": str(tmp_path / "state"), "host": NODE,
               "enabled_backends": ",".join(backends),
               "migration_progress_report_interval": "0.1"}
    options.update({k: str(v) for k, v in defaults.items()})
    lines = ["[DEFAULT]"] + [f"{k} = {v}" for k, v in options.items()]
    for name, opts in backends.items():
        lines += ["", f"[{name}]"]
        opts = dict(opts)
        opts.setdefault("volume_driver", "local")
        lines += [f"{k} = {v}" for k, v in opts.items()]
    lines += ["", "[oslo_messaging_notifications]", "driver = test"]
    path = tmp_path / "volmigrate.conf"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def notifications(event_type: str | None = None) -> list[dict]:
    """Notifications sent so far: [{'event_type', 'payload', 'priority', 'publisher_id'}]."""
    found = []
    for _ctxt, message, priority, _retry in notify_test.NOTIFICATIONS:
        if event_type is None or message["event_type"] == event_type:
            found.append(dict(message, priority=priority))
    return found


@pytest.fixture
def make_service(tmp_path):
    """Factory: make_service(backends=..., **DEFAULT options) -> started MigrationService."""
    started = []

    def factory(backends=None, start=True, **defaults) -> MigrationService:
        conf = cfg.ConfigOpts()
        conf(["--config-file", write_config(tmp_path, backends, **defaults)])
        svc = MigrationService(conf)
        if start:
            svc.start()
            started.append(svc)
        return svc

    notify_test.reset()
    yield factory
    for svc in started:
        svc.stop()
    notify_test.reset()


@pytest.fixture
def service(make_service):
    return make_service()


def volume_files(tmp_path, backend: str) -> list[str]:
    folder = tmp_path / "state" / "volumes" / backend
    return sorted(os.listdir(folder)) if folder.exists() else []


VOLUME_KEYS = ("id", "name", "size", "host", "status", "attach_status", "project_id",
               "name_id", "provider_location")
MIGRATION_KEYS = ("id", "volume_id", "source_host", "dest_host", "lock_volume",
                  "force_host_copy", "case", "previous_status", "error", "abort_reason")


def snapshot(svc: MigrationService) -> tuple:
    """Everything a rejected request could change: rows, statuses, hosts, requests.

    Left out: what a migration running beside the request moves on its own
    (its progress, heartbeat, starting -> migrating).
    """
    running = ("starting", "migrating", "completing")

    def volume(v):
        status = "running" if v["migration_status"] in running else v["migration_status"]
        return tuple(v[k] for k in VOLUME_KEYS) + (status,)

    return ([volume(v) for v in svc.list_volumes(include_hidden=True)],
            [tuple(m[k] for k in MIGRATION_KEYS) for m in svc.list_migrations()])


def host(backend: str) -> str:
    return f"{NODE}@{backend}"


def dedent(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


# How long a test waits for something that will come (a migration to end, a
# command to answer, a condition to hold): only a broken build reaches it, however
# loaded the machine; a passing test never waits that long.
PATIENCE = 300.0


def wait_for(predicate, timeout: float = PATIENCE) -> None:
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"condition not reached in {timeout:g} s")


def lose_flow(svc: MigrationService, flow_uuid: str) -> None:
    """Delete a flow's record from TaskFlow's persistence, as a lost database would."""
    import sqlalchemy as sa
    with svc.db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM atomdetails WHERE parent_uuid = :u"), {"u": flow_uuid})
        conn.execute(sa.text("DELETE FROM flowdetails WHERE uuid = :u"), {"u": flow_uuid})


# -- copies held on purpose -----------------------------------------------------
# A test that acts while a copy runs must not bet on how long the copy lasts:
# it holds the copy, acts, then lets it go (or aborts, signals, kills it).
#
# Across processes (a `volmigrate` command): a copy throttled to HOLD_BPS moves
# its first block (volume_dd_blocksize, 1 MiB by default) at once, makes it
# durable, then waits block / HOLD_BPS seconds (17 minutes for 1 MiB) before the
# next: held at exactly one block, far longer than any test, until it is
# aborted, signalled or killed. Every copy method paces its runs so (dd, kernel,
# file I/O), so does the Storwize simulator's move (1 MiB chunks, --migrate-rate).
HOLD_BPS = 1024
# In this process: CopyGate (the `copy_gate` fixture) holds a copy at its first
# durable checkpoint until the test releases it; released, it goes on at full
# speed. A copy checkpoints before its end when its volume holds data and
# migration_checkpoint_size is below its size: these options make it every MiB.
HOLDABLE = {"migration_checkpoint_size": "1M"}


class CopyGate:
    """Holds the copy of every migration run in this process at its first durable
    checkpoint, until the test releases it or the migration is asked to abort.

    The copy records each durable checkpoint on its migration row (`bytes_durable`)
    from its own thread; the gate waits right after that record. A held copy has
    copied and made durable part of the volume (its position is known, the
    monitor reports it) and cannot get further, however long the test takes.
    An abort (the row's abort_reason) opens the gate, so the abort is seen at
    once, as it would be between two blocks.
    """

    def __init__(self) -> None:
        import threading
        self._lock = threading.Condition()
        self._held: dict[str, int] = {}       # migration id -> bytes durable when held
        self._released: dict[str, threading.Event] = {}
        self._armed = True

    def wrap(self, update_migration):
        """Database.update_migration, with the gate after a checkpoint's record."""
        import functools
        gate = self

        @functools.wraps(update_migration)
        def gated(db, migration_id, values, *args, **kwargs):
            result = update_migration(db, migration_id, values, *args, **kwargs)
            if set(values) == {"bytes_durable"}:
                gate._maybe_hold(db, migration_id, values["bytes_durable"])
            return result
        return gated

    def _maybe_hold(self, db, migration_id: str, done: int) -> None:
        import threading
        import time
        row = db.get_migration(migration_id)
        with self._lock:
            if (not self._armed or migration_id in self._held
                    or not 0 < done < row["bytes_total"]):
                return
            self._held[migration_id] = done
            released = self._released.setdefault(migration_id, threading.Event())
            self._lock.notify_all()
        # Only a test that failed while holding a copy (and stops its service
        # before the fixture's teardown releases it) waits this long.
        deadline = time.monotonic() + PATIENCE
        while not released.wait(0.05) and time.monotonic() < deadline:
            if (db.get_migration(migration_id) or {}).get("abort_reason"):
                return

    def wait_held(self, svc: MigrationService, migration_id: str) -> int:
        """Until the migration's copy is held; the bytes it has made durable."""
        import time
        deadline = time.monotonic() + PATIENCE
        with self._lock:
            while migration_id not in self._held:
                state = svc.get_migration(migration_id)["state"]
                if state not in ("pending", "running"):
                    raise AssertionError(
                        f"migration {migration_id} ended ({state}) without a checkpoint "
                        f"before its end: give its volume data, and the service HOLDABLE")
                if time.monotonic() > deadline:
                    raise AssertionError(f"the copy of migration {migration_id} was not "
                                         f"held in {PATIENCE:g} s")
                self._lock.wait(0.05)
            return self._held[migration_id]

    def migrate(self, svc: MigrationService, volume_id: str, dest: str, **kwargs):
        """Start a migration and return its (accepted) response once its copy is held."""
        response = svc.migrate_volume(volume_id, dest, **kwargs)
        assert response.accepted, response.message
        self.wait_held(svc, response.migration_id)
        return response

    def release(self, migration_id: str | None = None) -> None:
        """Let one held copy go on (or, without an id, every copy, and hold no more)."""
        import threading
        with self._lock:
            if migration_id is None:
                self._armed = False
                for event in self._released.values():
                    event.set()
            else:
                self._released.setdefault(migration_id, threading.Event()).set()


@pytest.fixture
def copy_gate(make_service, monkeypatch):
    """A CopyGate on every migration copy of this process, opened at the end of the
    test (before make_service stops the services, so none waits on a held copy)."""
    from volmigrate.db.api import Database
    gate = CopyGate()
    monkeypatch.setattr(Database, "update_migration", gate.wrap(Database.update_migration))
    yield gate
    gate.release()


# -- data of any backend's volume, through its driver ---------------------------
def _open_volume(svc: MigrationService, volume: dict, writable: bool):
    """(file object, cleanup) on a volume of any backend, as a migration reaches it."""
    from volmigrate.drivers.base import ACCESS_STREAM
    from volmigrate.common.volumes import volume_ref

    driver = svc.drivers[volume["host"].split("@", 1)[1].split("#", 1)[0]]
    ref = volume_ref(volume)
    connection = driver.connect_volume(ref, writable)
    try:
        if connection["access"] == ACCESS_STREAM:
            handle = driver.open_connection(connection, writable)
        else:
            handle = open(connection["path"], "r+b" if writable else "rb")
    except BaseException:
        driver.disconnect_volume(ref, connection)
        raise

    def cleanup():
        handle.close()
        driver.disconnect_volume(ref, connection)
    return handle, cleanup


def write_volume(svc: MigrationService, volume: dict, extents=None) -> str:
    """Write random data into a volume (all of it, or the (offset, length) extents,
    the rest left as it is: zeros on a new volume); return the volume's sha256."""
    handle, cleanup = _open_volume(svc, volume, True)
    try:
        for offset, length in extents or [(0, volume["size"])]:
            handle.seek(offset)
            while length:
                n = min(length, 4 * MiB)
                handle.write(os.urandom(n))
                length -= n
        handle.flush()
        try:
            os.fsync(handle.fileno())
        except (OSError, ValueError):
            pass  # a file-like object's flush() is its sync
    finally:
        cleanup()
    return volume_sha256(svc, volume)


def volume_sha256(svc: MigrationService, volume: dict) -> str:
    """sha256 of exactly the volume's `size` bytes, read through its driver."""
    handle, cleanup = _open_volume(svc, volume, False)
    digest = hashlib.sha256()
    try:
        remaining = volume["size"]
        while remaining:
            block = handle.read(min(remaining, MiB))
            if not block:
                raise AssertionError(f"volume {volume['id']} ended {remaining} bytes early")
            digest.update(block)
            remaining -= len(block)
    finally:
        cleanup()
    return digest.hexdigest()


# -- real lvm2 volume groups on loop devices ------------------------------------
HAS_LVM = HAS_LOOP and bool(__import__("shutil").which("lvcreate"))
NO_LVM_REASON = "the LVM tests need root, /dev/loop-control and lvm2 (apt-get install lvm2)"


class LoopVG:
    """A volume group on a loop device over a sparse file, private to one test.

    Its lvm.conf (the backend's `lvm_conf_file`) lets lvm2 see only this
    test's loop device, so no test ever scans or touches another VG.
    """

    def __init__(self, work, size: int = 1024 * MiB) -> None:
        import subprocess
        import uuid
        self.name = f"vmtest-{uuid.uuid4().hex[:8]}"
        self.image = os.path.join(str(work), f"{self.name}.img")
        with open(self.image, "wb") as f:
            f.truncate(size)
        self.device = subprocess.run(["losetup", "--find", "--show", self.image],
                                     check=True, capture_output=True, text=True).stdout.strip()
        self.conf_dir = os.path.join(str(work), f"{self.name}-lvm")
        os.makedirs(self.conf_dir)
        self.conf_file = os.path.join(self.conf_dir, "lvm.conf")
        with open(self.conf_file, "w") as f:
            f.write(f'devices {{ filter = [ "a|^{self.device}$|", "r|.*|" ] '
                    f'obtain_device_list_from_udev = 0 hints = "none" }}\n'
                    'activation { udev_sync = 0 udev_rules = 0 }\n')
        self.run("pvcreate", self.device)
        self.run("vgcreate", self.name, self.device)

    def run(self, *args: str, check: bool = True):
        import subprocess
        env = dict(os.environ, LVM_SYSTEM_DIR=self.conf_dir, LVM_SUPPRESS_FD_WARNINGS="1")
        return subprocess.run(list(args), check=check, capture_output=True, text=True, env=env)

    def lvs(self) -> list[str]:
        out = self.run("lvs", "--noheadings", "-o", "lv_name", self.name).stdout
        return sorted(out.split())

    def backend(self, **options) -> dict:
        """The options of a backend section using this VG."""
        return dict({"volume_driver": "lvm", "volume_group": self.name,
                     "lvm_conf_file": self.conf_file, "lvm_activation": "loop"}, **options)

    def destroy(self) -> None:
        import subprocess
        listing = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME",
                                  "--associated", self.device],
                                 capture_output=True, text=True).stdout
        for loop in listing.split():  # left over by a failing test
            subprocess.run(["losetup", "--detach", loop], capture_output=True)
        self.run("vgremove", "-f", "--driverloaded", "n", self.name, check=False)
        self.run("pvremove", "-f", self.device, check=False)
        subprocess.run(["losetup", "--detach", self.device], capture_output=True)
        os.unlink(self.image)


@pytest.fixture
def make_vg(tmp_path):
    """Factory: make_vg(size=...) -> LoopVG, destroyed at the end of the test."""
    if not HAS_LVM:
        pytest.skip(NO_LVM_REASON)
    made = []

    def factory(size: int = 1024 * MiB) -> LoopVG:
        vg = LoopVG(tmp_path, size)
        made.append(vg)
        return vg

    yield factory
    for vg in made:
        vg.destroy()


# -- the Storwize simulator, as a separate process --------------------------------
class StorwizeArray:
    """A running `volmigrate simulator storwize` (a simulator, not an array)."""

    LOGIN, PASSWORD = "superuser", "passw0rd"

    def __init__(self, work, pools=("pool1", "pool2"), migrate_rate: str = "64M",
                 extra: tuple[str, ...] = (), port: int = 0) -> None:
        self.data_dir = os.path.join(str(work), "storwize")
        self.pools, self.migrate_rate, self.extra = list(pools), migrate_rate, list(extra)
        self.port = port
        self.proc = None
        self.start()

    def start(self) -> None:
        import subprocess
        import sys
        args = [sys.executable, "-m", "volmigrate.drivers.simulators.storwize",
                "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir,
                "--pools", ",".join(self.pools), "--migrate-rate", self.migrate_rate,
                "--login", self.LOGIN, "--password", self.PASSWORD, *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "ready on" not in line:
            self.proc.kill()
            raise RuntimeError(f"the Storwize simulator did not start: {line!r}")
        self.port = int(line.strip().rsplit(":", 1)[1])

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def backend(self, **options) -> dict:
        return dict({"volume_driver": "storwize", "san_ip": "127.0.0.1",
                     "san_ssh_port": str(self.port), "san_login": self.LOGIN,
                     "san_password": self.PASSWORD,
                     "storwize_svc_volpool_name": ",".join(self.pools)}, **options)

    def cli(self, command: str) -> str:
        """Run one CLI command over SSH, as an administrator would."""
        import paramiko
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect("127.0.0.1", self.port, self.LOGIN, self.PASSWORD,
                       look_for_keys=False, allow_agent=False)
        try:
            _, stdout, stderr = client.exec_command(command)
            out = stdout.read().decode()
            if stdout.channel.recv_exit_status() != 0:
                raise RuntimeError(stderr.read().decode())
            return out
        finally:
            client.close()

    def vdisks(self) -> dict[str, str]:
        """{vdisk name: pool} of every vdisk on the array."""
        lines = self.cli("svcinfo lsvdisk -delim !").splitlines()
        if not lines:
            return {}
        header = lines[0].split("!")
        rows = [dict(zip(header, line.split("!"))) for line in lines[1:] if line]
        return {row["name"]: row["mdisk_grp_name"] for row in rows}


@pytest.fixture
def make_array(tmp_path):
    """Factory: make_array(...) -> a started StorwizeArray, killed at the end."""
    made = []

    def factory(**kwargs) -> StorwizeArray:
        array = StorwizeArray(tmp_path / f"array{len(made)}", **kwargs)
        made.append(array)
        return array

    yield factory
    for array in made:
        array.kill()
