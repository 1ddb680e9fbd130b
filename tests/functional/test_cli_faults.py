"""The `volmigrate` command under faults: signals, a full state filesystem, internal
errors, hostile names. Real subprocesses of the command, real signals, a real tmpfs.

What a user sees is asserted: the exit status, the one line on stderr, the
volume's statuses afterwards, and the sha256 of its data.
"""

import json
import os
import queue
import re
import select
import signal
import sqlite3
import subprocess
import sys
import threading

import pytest
from oslo_config import cfg

from vmtest import (HOLD_BPS, IS_ROOT, PATIENCE, MiB, fill_random, host, sha256_of, wait_for,
                    write_config)
from volmigrate.cli import output
from volmigrate.engine import MigrationService

CLI = os.path.join(os.path.dirname(sys.executable), "volmigrate")
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The copy is held (HOLD_BPS) after its first MiB: a signal always lands during
# it, however loaded the machine, and the rollback it starts is not slowed.
SIZE, RATE = 4 * MiB, HOLD_BPS
# Bytes a terminal could act on: ESC, CR, BEL, the C1 CSI.
RAW_CONTROLS = ("\x1b", "\r", "\x07", "\x9b")


def _env(kill_at: str | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=TESTS_DIR)  # for the faulty test driver
    env.pop("VOLMIGRATE_TEST_KILL_AT", None)
    if kill_at:
        env["VOLMIGRATE_TEST_KILL_AT"] = kill_at
    return env


# Commands started by a test: a held migration would outlive a failed test.
_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_command_left_behind():
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


class Setup:
    """A config, one volume of random data on backend a, and the CLI to run on them."""

    def __init__(self, tmp_path, size: int = SIZE, backends=None, **defaults) -> None:
        defaults.setdefault("volume_copy_bps_limit", RATE)
        self.tmp_path = tmp_path
        self.conf = write_config(tmp_path, backends, **defaults)
        self.svc = self._service()
        self.svc.start(recover=False)
        self.volume = self.svc.create_volume(size, host("a"), name="precious")
        self.before = fill_random(self.volume["provider_location"], size)
        self.svc.stop()

    def _service(self) -> MigrationService:
        conf = cfg.ConfigOpts()
        conf(["--config-file", self.conf])
        return MigrationService(conf)

    def run(self, *args: str, timeout: float = PATIENCE, kill_at: str | None = None):
        return subprocess.run([CLI, "--config-file", self.conf, *args], capture_output=True,
                              text=True, timeout=timeout, env=_env(kill_at))

    def start(self, *args: str, **kwargs) -> subprocess.Popen:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.Popen([CLI, "--config-file", self.conf, *args], text=True,
                                env=_env(), **kwargs)
        _STARTED.append(proc)
        return proc

    def migrate(self, *extra: str, **kwargs) -> subprocess.Popen:
        return self.start("migrate", self.volume["id"], host("b"), "--lock-volume", *extra,
                          **kwargs)

    def now(self) -> dict:
        return self.svc.get_volume(self.volume["id"])

    def migration(self) -> dict:
        return self.svc.db.latest_migration(self.volume["id"])

    def wait_copying(self, proc: subprocess.Popen) -> None:
        """Until the migration copies (held there), the command still running it."""
        wait_for(lambda: proc.poll() is not None
                 or self.now()["migration_status"] == "migrating")
        assert proc.poll() is None, f"the command ended ({proc.returncode}) before its copy"

    def set_option(self, name: str, value) -> None:
        """Change a [DEFAULT] option of the config file, as an administrator would."""
        text = open(self.conf).read()
        text, found = re.subn(rf"(?m)^{name} = .*$", f"{name} = {value}", text)
        assert found == 1, name
        open(self.conf, "w").write(text)

    def assert_rolled_back(self, reason: str | None = None) -> dict:
        """Usable on its source, data intact, no hidden destination left."""
        volume, migration = self.now(), self.migration()
        assert volume["status"] == "available"  # not maintenance: the lock is released
        assert volume["migration_status"] == "error"
        assert volume["host"] == "node1@a#a"
        assert migration["state"] == "error"
        if reason:
            assert migration["error"] == reason
        assert [v["id"] for v in self.svc.list_volumes(include_hidden=True)] == [volume["id"]]
        assert sha256_of(volume["provider_location"]) == self.before
        return migration


@pytest.fixture
def setup(tmp_path):
    return Setup(tmp_path)


def _one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


# -- item 4: SIGTERM and SIGHUP roll back like SIGINT -------------------------------
@pytest.mark.parametrize("signum,wait", [
    (signal.SIGTERM, True), (signal.SIGTERM, False), (signal.SIGHUP, False),
    (signal.SIGINT, False)], ids=["SIGTERM-wait", "SIGTERM", "SIGHUP", "SIGINT"])
def test_signal_rolls_back_the_migration(setup, signum, wait):
    proc = setup.migrate(*(["--wait"] if wait else []))
    setup.wait_copying(proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=PATIENCE)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, err
    migration = setup.assert_rolled_back(f"aborted: the migrate command received {name}")
    assert _one_line(err) == (
        f"Migration {migration['id']} failed: aborted: the migrate command received {name}; "
        f"volume {setup.volume['id']} stays on node1@a#a (status available, "
        f"migration_status error).")
    assert f"{name} received: aborting migration {migration['id']}" in out


def test_sighup_after_the_terminal_closed(setup):
    """The terminal is gone (writes fail with EIO) while the progress bar draws on it."""
    master, slave = os.openpty()
    proc = setup.migrate("--wait", stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    stop = threading.Event()

    def drain():  # a terminal reads what is written to it
        while not stop.is_set():
            if select.select([master], [], [], 0.05)[0]:
                try:
                    os.read(master, 65536)
                except OSError:
                    return

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        setup.wait_copying(proc)
    finally:
        stop.set()
        reader.join()
        os.close(master)  # the terminal closes...
    proc.send_signal(signal.SIGHUP)  # ...and hangs its processes up
    assert proc.wait(timeout=PATIENCE) == 128 + signal.SIGHUP
    setup.assert_rolled_back("aborted: the migrate command received SIGHUP")


def test_more_signals_during_the_rollback_do_not_cut_it_short(setup):
    proc = setup.migrate()
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout])
    reader.start()
    setup.wait_copying(proc)
    proc.send_signal(signal.SIGTERM)
    while "aborting migration" not in lines.get(timeout=PATIENCE):
        pass
    proc.send_signal(signal.SIGTERM)  # a service manager insisting
    proc.send_signal(signal.SIGINT)  # an impatient Ctrl-C
    err = proc.stderr.read()
    assert proc.wait(timeout=PATIENCE) == 128 + signal.SIGTERM, err
    reader.join()
    setup.assert_rolled_back("aborted: the migrate command received SIGTERM")
    assert "Migration" in _one_line(err)


def test_sigterm_during_recover_rolls_back(setup):
    killed = setup.run("migrate", setup.volume["id"], host("b"), "--lock-volume",
                       kill_at="copy-data:RUNNING")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    first_owner = setup.migration()["owner"]
    proc = setup.start("recover")
    # The resumed copy is held (HOLD_BPS): SIGTERM lands while it runs.
    wait_for(lambda: proc.poll() is not None or (setup.migration()["owner"] != first_owner
             and setup.now()["migration_status"] == "migrating"))
    assert proc.poll() is None, f"recover ended ({proc.returncode}) before its copy"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 128 + signal.SIGTERM, err
    migration = setup.assert_rolled_back("aborted: the recover command received SIGTERM")
    assert _one_line(err) == (
        f"volmigrate: recover stopped by SIGTERM: migration {migration['id']} of volume "
        f"{setup.volume['id']} ended error (aborted: the recover command received SIGTERM)")


def test_refusals_name_the_dead_owner_and_recover(tmp_path):
    """kill -9 of a locked migration: attach, migrate and delete say to run recover."""
    setup = Setup(tmp_path, size=4 * MiB, volume_copy_bps_limit=0)
    killed = setup.run("migrate", setup.volume["id"], host("b"), "--lock-volume",
                       kill_at="copy-data:RUNNING")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    migration = setup.migration()
    pid, node = migration["owner"].split("/")[2], migration["owner"].split("/")[0]
    why = (f"its migration {migration['id']} (migration_status starting, status "
           f"maintenance) was left unfinished by process {pid} on {node}, which is gone: "
           f"run `volmigrate recover` to resume or roll it back")
    vid = setup.volume["id"]

    attach = setup.run("attach", vid)
    assert attach.returncode == 1
    assert _one_line(attach.stderr) == f"volmigrate: volume {vid} cannot be attached: {why}"

    svc = setup._service()  # the same refusals through the embedding API
    svc.start(recover=False)
    try:
        response = svc.migrate_volume(vid, host("b"))
        assert not response.accepted
        assert response.reason == f"volume {vid} cannot be migrated: {why}"
        with pytest.raises(Exception, match="cannot be deleted: its migration .* run "
                                            "`volmigrate recover`"):
            svc.delete_volume(vid)
    finally:
        svc.stop()

    recovered = setup.run("recover")
    assert recovered.returncode == 0, recovered.stderr
    volume = setup.now()
    assert volume["status"] == "available" and volume["migration_status"] == "success"
    assert sha256_of(volume["provider_location"]) == setup.before


# -- item 5: exit statuses ------------------------------------------------------------
def test_failed_migration_without_wait_exits_1(tmp_path):
    s = Setup(tmp_path, size=MiB, backends={
        "a": {}, "b": {"volume_driver": "vmtest_faulty:FaultyLocalDriver",
                       "fail_on": "create"}})
    out = s.run("migrate", s.volume["id"], host("b"))
    assert out.returncode == 1
    line = _one_line(out.stderr)
    assert line.startswith(f"Migration {s.migration()['id']} failed: ")
    assert "injected failure of create on b" in line
    assert line.endswith(f"; volume {s.volume['id']} stays on node1@a#a (status available, "
                         f"migration_status error).")


def test_internal_error_prints_one_line(setup):
    """A database edited by hand (a host that is not node@backend): one line, exit 1."""
    database = os.path.join(str(setup.tmp_path), "state", "volmigrate.sqlite")
    with sqlite3.connect(database) as db:
        db.execute("UPDATE volumes SET host = 'garbage' WHERE id = ?", (setup.volume["id"],))
    out = setup.run("migrate", setup.volume["id"], host("b"))
    assert out.returncode == 1
    log = os.path.join(str(setup.tmp_path), "state", "volmigrate.log")
    assert _one_line(out.stderr) == (
        f"volmigrate: internal error: ValueError: host 'garbage' is malformed: expected "
        f"node@backend[#pool] (details in {log})")
    with open(log) as f:
        assert "Traceback" in f.read()  # the details are in the log


# -- item 7: the state filesystem fills up during a migration --------------------------
@pytest.fixture
def small_state_fs(tmp_path):
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(state)],
                   check=True)
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def test_full_state_filesystem(tmp_path, small_state_fs):
    volumes = tmp_path / "volumes"  # the volumes live elsewhere
    # A copy that goes on writing to the database (a 64 KiB block made durable and
    # recorded every half second) for a minute: far longer than filling the
    # file system takes, so its next record meets the full file system.
    s = Setup(tmp_path, size=8 * MiB, volume_copy_bps_limit=128 * 1024,
              volume_dd_blocksize="64K", backends={
                  "a": {"local_volume_dir": volumes / "a"},
                  "b": {"local_volume_dir": volumes / "b"}})
    s.svc.db.engine.dispose()  # our connections closed: the migration starts a new WAL
    proc = s.migrate()
    s.wait_copying(proc)
    filler = small_state_fs / "filler"
    with open(filler, "wb") as f:  # another program takes all the space left
        with pytest.raises(OSError):
            while True:
                f.write(b"\0" * MiB)
                f.flush()
    out, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 1, out + err
    database = f"sqlite:///{small_state_fs}/volmigrate.sqlite"
    migration = s.migration()
    assert _one_line(err) == (
        f"volmigrate: cannot write the state database {database}: database or disk is "
        f"full; migration {migration['id']} of volume {s.volume['id']} was left for "
        f"`volmigrate recover`: run it once the database can be written again")

    filler.unlink()
    s.set_option("volume_copy_bps_limit", 0)  # the recovery need not wait
    recovered = s.run("recover")
    assert recovered.returncode == 0, recovered.stderr
    volume, migration = s.now(), s.migration()
    assert volume["status"] == "available"
    assert volume["migration_status"] == migration["state"] in ("success", "error")
    assert sha256_of(volume["provider_location"]) == s.before
    assert [v["id"] for v in s.svc.list_volumes(include_hidden=True)] == [volume["id"]]


# -- item 9: names and echoed input never reach the terminal raw -----------------------
EVIL = "\x1b[2J\x1b[31mX"
MARKUP = "[bold red]boom[/]"


def _assert_clean(*texts: str) -> None:
    for text in texts:
        for control in RAW_CONTROLS:
            assert control not in text, repr(text)


def test_hostile_names_are_escaped(tmp_path):
    s = Setup(tmp_path, size=MiB)
    s.svc.start(recover=False)
    other_name = f"a\rb\nc\x9b2J{MARKUP}"
    evil = s.svc.create_volume(MiB, host("a"), name=EVIL)
    other = s.svc.create_volume(MiB, host("a"), name=other_name)
    s.svc.stop()
    vid = s.volume["id"]

    started = {  # concurrently: each command pays its own start
        "create": s.start("create", "--size", "1M", "--host", host("a"), "--name", other_name),
        "list": s.start("list"),
        "json": s.start("list", "--format", "json"),
        "missing": s.start("show", EVIL),
        "migrate": s.start("migrate", vid, f"node1@b{EVIL}"),
        "usage": s.start("list", EVIL),
    }
    runs = {}
    for name, proc in started.items():
        out, err = proc.communicate(timeout=PATIENCE)
        runs[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if name != "json":
            _assert_clean(out, err)

    escaped, other_escaped = "\\x1b[2J\\x1b[31mX", "a\\rb\\nc\\x9b2J" + MARKUP
    assert runs["create"].returncode == 0
    assert other_escaped in runs["create"].stdout  # the record table; markup shown as is
    assert escaped in runs["list"].stdout and other_escaped in runs["list"].stdout
    names = {v["name"] for v in json.loads(runs["json"].stdout)}
    assert {evil["name"], other["name"]} <= names  # JSON stays exact
    assert runs["missing"].returncode == 1
    assert _one_line(runs["missing"].stderr) == f"volmigrate: volume {escaped} not found"
    assert runs["migrate"].returncode == 1 and escaped in runs["migrate"].stdout
    assert runs["usage"].returncode == 2 and escaped in runs["usage"].stderr


def test_safe_escapes_every_terminal_control():
    assert output.safe("db1 ü 名前") == "db1 ü 名前"
    assert output.safe(EVIL) == "\\x1b[2J\\x1b[31mX"
    assert output.safe("a\tb\x7fc\x85d\u202ee\u2028f\udcff\r\n") == \
        "a\\tb\\x7fc\\x85d\\u202ee\\u2028f\\udcff\\r\\n"
    assert output.safe("one\ntwo", keep="\n") == "one\ntwo"
