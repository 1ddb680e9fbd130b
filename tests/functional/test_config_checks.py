"""Configuration checked at start, concurrent first use, a state directory that cannot
be written (issue 13, items 6 and 8): the `volmigrate` command run as an administrator
would, in subprocesses, on real files, real read-only mounts and real file attributes."""

import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest
from oslo_config import cfg

from vmtest import IS_ROOT, PATIENCE, MiB, host, wait_for, write_config
from volmigrate.drivers.local import LocalDriver
from volmigrate.engine import MigrationService
from volmigrate.engine.exceptions import ConfigError

CLI = os.path.join(os.path.dirname(sys.executable), "volmigrate")
needs_root = pytest.mark.skipif(not IS_ROOT, reason="mounts and file attributes need root")


def run(conf, *args, cwd=None, env=None, check=True, timeout=120):
    proc = subprocess.run([CLI, "--config-file", conf, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def one_line(proc) -> str:
    """The failing command's one line on stderr (and nothing else there)."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1 and len(lines) == 1, (proc.returncode, proc.stderr)
    return lines[0]


def files_under(folder) -> dict[str, int]:
    """Every path under `folder` with its size: what a command may not change."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = os.lstat(path).st_size
    return found


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    # A relative path accepted by mistake lands here, not in the repository.
    monkeypatch.chdir(tmp_path)


# -- concurrent first use ------------------------------------------------------------
class GatedLocalDriver(LocalDriver):
    """The local driver, whose setup first waits at a gate the test holds shut (an
    flock on ``<state_path>.gate``). A command sets its backends up after creating
    volmigrate's tables and before TaskFlow's: the commands started together all
    wait there, then go on at once, as 30 scripts started at once would at best."""

    def do_setup(self) -> None:
        with open(f"{self.state_path}.gate") as gate:
            fcntl.flock(gate, fcntl.LOCK_SH)
        super().do_setup()


def _blocked_on(path: str) -> int:
    """Processes waiting for an flock on `path` (from /proc/locks: '->' lines)."""
    inode = os.stat(path).st_ino
    with open("/proc/locks") as f:
        return sum(1 for line in f if "->" in line and f":{inode} " in line)


@pytest.mark.parametrize("flow_db,count", [("shared", 12), ("separate", 4)])
def test_concurrent_first_use_all_succeed(tmp_path, flow_db, count):
    """`create`s at once on a fresh state directory: each created TaskFlow's tables
    without a lock, and some failed ("table logbooks already exists").

    The gate makes every process reach the schema at the same moment, so 12
    fail the old code as surely as the issue's 30 (30 passed by hand too), in
    a third of the suite's time (each command spends seconds importing here)."""
    conf = write_config(tmp_path, {"fast": {
        "volume_driver": f"{__name__}:{GatedLocalDriver.__name__}"}})
    if flow_db == "separate":  # TaskFlow's tables in their own SQLite file
        with open(conf, "a") as f:
            f.write(f"[taskflow]\npersistence_connection = sqlite:///{tmp_path}/flows/"
                    f"flows.sqlite\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.environ.get("PYTHONPATH", ""), os.path.dirname(__file__),
         os.path.dirname(os.path.dirname(__file__))]))
    procs = []
    with open(tmp_path / "state.gate", "w") as gate:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            procs = [subprocess.Popen([CLI, "--config-file", conf, "create", "--size", "8M",
                                       "--host", host("fast"), "--format", "json"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env)
                     for _ in range(count)]
            wait_for(lambda: _blocked_on(gate.name) == count)
        except BaseException:
            for proc in procs:
                proc.kill()
                proc.communicate()
            raise
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)  # all go on at once
    created = []
    for proc in procs:
        out, err = proc.communicate(timeout=PATIENCE)
        assert proc.returncode == 0 and err == "", (proc.returncode, err)
        created.append(json.loads(out)["id"])
    listed = json.loads(run(conf, "list", "--format", "json", env=env).stdout)
    assert sorted(v["id"] for v in listed) == sorted(created)
    assert all(v["status"] == "available" for v in listed)
    log = (tmp_path / "state" / "volmigrate.log").read_text()
    assert "already exists" not in log and " ERROR " not in log


# -- a state directory that cannot be written ----------------------------------------------
@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """A state directory (shared by the tests below, which cannot change it) holding a
    volume migrated a -> b, by a service that has ended and closed the database."""
    tmp_path = tmp_path_factory.mktemp("migrated")
    conf = cfg.ConfigOpts()
    conf(["--config-file", write_config(tmp_path)])
    svc = MigrationService(conf)
    svc.start()
    try:
        volume = svc.create_volume(4 * MiB, host("a"))
        response = svc.migrate_volume(volume["id"], host("b"))
        assert svc.wait(response.migration_id, PATIENCE)["state"] == "success"
    finally:
        svc.stop()
        svc.db.engine.dispose()  # as a command ends: SQLite removes the -wal and -shm
    return tmp_path, str(tmp_path / "volmigrate.conf"), volume["id"], response.migration_id


@pytest.fixture
def read_only_view(migrated):
    """The state directory seen through a read-only bind mount, and a config using it."""
    tmp_path, conf, volume_id, migration_id = migrated
    view = tmp_path / "ro-state"
    view.mkdir()
    subprocess.run(["mount", "--bind", str(tmp_path / "state"), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        ro_conf = tmp_path / "ro.conf"
        ro_conf.write_text(open(conf).read().replace(str(tmp_path / "state"), str(view)))
        yield str(ro_conf), view, volume_id, migration_id
    finally:
        subprocess.run(["umount", str(view)], check=True)
        view.rmdir()


READ_COMMANDS = [["list", "--format", "json"], ["show", "{volume}", "--format", "json"],
                 ["progress", "{volume}", "--format", "json"], ["flow", "show", "{migration}"]]
WRITE_COMMANDS = [["create", "--size", "1M", "--host", "node1@a"],
                  ["migrate", "{volume}", "node1@a"]]


@needs_root
def test_a_read_only_state_directory_is_read_not_written(read_only_view):
    conf, view, volume_id, migration_id = read_only_view
    before = files_under(view)
    assert not any(name.endswith(("-wal", "-shm")) for name in before)
    for command in READ_COMMANDS:
        args = [a.format(volume=volume_id, migration=migration_id) for a in command]
        out = run(conf, *args, check=False)
        assert out.returncode == 0 and out.stderr == "", (args, out.stderr)
        assert volume_id in out.stdout or migration_id in out.stdout, args
        if command[0] == "show":
            shown = json.loads(out.stdout)
            assert shown["migration_status"] == "success" and shown["host"] == "node1@b#b"
    for command in WRITE_COMMANDS:
        out = run(conf, *[a.format(volume=volume_id) for a in command], check=False)
        assert one_line(out) == (
            f"volmigrate: cannot write the state database {view}/volmigrate.sqlite: "
            f"Read-only file system (its folder {view}); only list, show, progress and "
            f"flow list/show work on it")
        assert out.stdout == ""
    assert files_under(view) == before  # no schema lock file, no log, no -wal or -shm


@needs_root
def test_a_read_only_view_sees_a_live_writer(migrated, read_only_view):
    """While a writer has the database open (its -wal and -shm exist), a reader of the
    read-only view reads through them and sees what the writer committed."""
    tmp_path = migrated[0]
    conf, _view, volume_id, _ = read_only_view
    writer = sqlite3.connect(tmp_path / "state" / "volmigrate.sqlite")
    try:
        writer.execute("UPDATE volumes SET name = 'renamed' WHERE id = ?", (volume_id,))
        writer.commit()
        assert (tmp_path / "state" / "volmigrate.sqlite-wal").exists()
        shown = json.loads(run(conf, "show", volume_id, "--format", "json").stdout)
        assert shown["name"] == "renamed"
    finally:
        writer.close()


@pytest.fixture
def immutable_database(migrated):
    if not shutil.which("chattr"):
        pytest.skip("no chattr")
    database = migrated[0] / "state" / "volmigrate.sqlite"
    if subprocess.run(["chattr", "+i", str(database)], capture_output=True).returncode:
        pytest.skip("this file system has no immutable attribute")
    try:
        yield migrated, database
    finally:
        subprocess.run(["chattr", "-i", str(database)], check=True)


@needs_root
def test_an_immutable_database_is_read_but_not_written(immutable_database):
    (_, conf, volume_id, _), database = immutable_database
    listed = json.loads(run(conf, "list", "--format", "json").stdout)
    assert [v["id"] for v in listed] == [volume_id]
    out = run(conf, "create", "--size", "1M", "--host", "node1@a", check=False)
    assert one_line(out) == (
        f"volmigrate: cannot write the state database {database}: Operation not permitted "
        f"(an immutable or append-only file? see lsattr); only list, show, progress and "
        f"flow list/show work on it")
    assert not os.path.exists(f"{database}-wal")  # the reader left nothing behind


# -- values checked at start -------------------------------------------------------------
def _start_error(tmp_path, backends=None, **defaults) -> str:
    conf = cfg.ConfigOpts()
    conf(["--config-file", write_config(tmp_path, backends, **defaults)])
    svc = MigrationService(conf)
    with pytest.raises(ConfigError) as info:
        svc.start()
    return str(info.value)


@pytest.mark.parametrize("option", ["migration_progress_report_interval",
                                    "migration_heartbeat_interval"])
@pytest.mark.parametrize("value,why", [
    ("inf", "should be less than or equal to"), ("1e300", "should be less than or equal to"),
    ("-inf", "should be greater than or equal to"), ("nan", "not a number"),
    ("-1", "should be greater than or equal to"), ("0", "should be greater than or equal to"),
])
def test_intervals_must_be_finite_and_bounded(tmp_path, option, value, why):
    message = _start_error(tmp_path, **{option: value})
    assert message.startswith(f"invalid value for [DEFAULT] {option}: '{value}': {why}")


@pytest.mark.parametrize("backends,defaults,message", [
    (None, {"volume_copy_bps_limit": str(2 ** 50)},
     f"invalid value for [DEFAULT] volume_copy_bps_limit: '{2 ** 50}': should be less"),
    (None, {"migration_checkpoint_size": "100G"},
     "invalid value for [DEFAULT] migration_checkpoint_size: '100G' must be between 1M "
     "and 64G"),
    (None, {"migration_checkpoint_size": "4K"}, "must be between 1M and 64G"),
    ({"a": {"volume_driver": "storwize", "san_ip": "127.0.0.1",
            "storwize_ssh_retries": "1000"}}, {},
     "invalid value for [a] storwize_ssh_retries: '1000': should be less"),
    ({"a": {"volume_driver": "storwize", "san_ip": "127.0.0.1", "san_ssh_port": "0"}}, {},
     "invalid value for [a] san_ssh_port: '0': should be greater than or equal to 1"),
    ({"a": {"volume_driver": "storwize", "san_ip": "127.0.0.1",
            "ssh_conn_timeout": "1000000000"}}, {},
     "invalid value for [a] ssh_conn_timeout: '1000000000': should be less"),
])
def test_sizes_rates_and_driver_numbers_are_bounded(tmp_path, backends, defaults, message):
    assert message in _start_error(tmp_path, backends, **defaults)


def test_a_bad_interval_is_one_line_from_the_command(tmp_path):
    conf = write_config(tmp_path, migration_progress_report_interval="nan")
    out = run(conf, "list", check=False)
    assert one_line(out) == ("volmigrate: invalid value for [DEFAULT] "
                             "migration_progress_report_interval: 'nan': not a number")


RELATIVE = "a relative path, which would depend on the directory volmigrate runs in; " \
           "give an absolute one"


def test_a_relative_volume_dir_is_refused_from_any_directory(tmp_path):
    conf = write_config(tmp_path, {"a": {"local_volume_dir": "vols"}, "b": {}})
    for cwd in (tmp_path / "one", tmp_path / "two"):
        cwd.mkdir()
        out = run(conf, "create", "--size", "1M", "--host", "node1@a", cwd=cwd,
                  check=False)
        assert one_line(out) == (f"volmigrate: invalid value for [a] local_volume_dir: "
                                 f"'vols': {RELATIVE}")
        assert os.listdir(cwd) == []  # nothing made relative to where it ran


@pytest.mark.parametrize("backends,defaults,message", [
    (None, {"state_path": "state"},
     f"invalid value for [DEFAULT] state_path: 'state': {RELATIVE}"),
    ({"a": {"local_volume_dir": "./relative"}}, {},
     f"invalid value for [a] local_volume_dir: './relative': {RELATIVE}"),
    ({"a": {"volume_driver": "lvm", "lvm_conf_file": "lvm/lvm.conf"}}, {},
     f"invalid value for [a] lvm_conf_file: 'lvm/lvm.conf': {RELATIVE}"),
])
def test_relative_paths_are_refused(tmp_path, backends, defaults, message):
    assert _start_error(tmp_path, backends, **defaults) == message


@pytest.mark.parametrize("group,option", [("database", "connection"),
                                          ("taskflow", "persistence_connection")])
def test_relative_sqlite_urls_are_refused(tmp_path, group, option):
    path = write_config(tmp_path)
    with open(path, "a") as f:
        f.write(f"[{group}]\n{option} = sqlite:///volmigrate.sqlite\n")
    conf = cfg.ConfigOpts()
    conf(["--config-file", path])
    with pytest.raises(ConfigError) as info:
        MigrationService(conf).connect()
    assert str(info.value) == (
        f"invalid value for [{group}] {option}: the SQLite file 'volmigrate.sqlite' is a "
        f"relative path: give an absolute one, e.g. sqlite:////var/lib/volmigrate/"
        f"volmigrate.sqlite (four slashes)")
    assert not (tmp_path / "volmigrate.sqlite").exists()  # the working directory


def test_unknown_backend_options_are_warned_about(tmp_path):
    conf = write_config(tmp_path, {"a": {"local_volume_dri": str(tmp_path / "mine")},
                                   "b": {"colour": "blue"}})
    warnings = [
        "volmigrate: warning: [a] local_volume_dri is not an option of the local driver "
        "(did you mean local_volume_dir?)",
        "volmigrate: warning: [b] colour is not an option of the local driver (its "
        "options: local_access, local_volume_dir, volume_backend_name, volume_driver)"]
    out = run(conf, "create", "--size", "1M", "--host", "node1@a", "--format", "json")
    assert out.stderr.splitlines() == warnings
    assert json.loads(out.stdout)["status"] == "available"  # the command still works
    log = (tmp_path / "state" / "volmigrate.log").read_text()
    for warning in warnings:
        assert warning.removeprefix("volmigrate: warning: ") in log
    assert run(conf, "list").stderr.splitlines() == warnings
