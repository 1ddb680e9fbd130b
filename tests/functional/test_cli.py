"""The `volmigrate` command, run as an administrator would, in subprocesses."""

import json
import os
import subprocess
import sys

import pytest

from vmtest import MiB, fill_random, sha256_of, write_config

CLI = os.path.join(os.path.dirname(sys.executable), "volmigrate")
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TESTS_DIR)


def run(conf, *args, check=True, timeout=120):
    env = dict(os.environ, PYTHONPATH=TESTS_DIR)  # for the faulty test driver
    proc = subprocess.run([CLI, "--config-file", conf, *args], capture_output=True,
                          text=True, timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


@pytest.fixture
def conf(tmp_path):
    path = write_config(tmp_path, volume_copy_bps_limit=64 * MiB)
    # The CLI's notifications go to the service log, as an administrator would set it.
    with open(path, "a") as f:
        f.write("[oslo_messaging_notifications]\ndriver = log\n")
    text = open(path).read().replace("[oslo_messaging_notifications]\ndriver = test\n", "")
    open(path, "w").write(text)
    return path


def test_administrator_walkthrough(conf, tmp_path):
    volume = json.loads(run(conf, "create", "--size", "64M", "--host", "node1@a",
                            "--name", "db1", "--format", "json").stdout)
    assert volume["size"] == 64 * MiB and volume["status"] == "available"
    assert volume["host"] == "node1@a#a" and volume["name"] == "db1"
    before = fill_random(volume["provider_location"], 64 * MiB)

    out = run(conf, "migrate", volume["id"], "node1@b", "--lock-volume", "--wait")
    assert out.stdout.startswith("Your migration request has been received. Please check "
                                 "migration status and the server log to see more "
                                 "information.\n")
    assert "succeeded" in out.stdout

    shown = json.loads(run(conf, "show", volume["id"], "--format", "json").stdout)
    for field in ("id", "name", "size", "host", "status", "migration_status", "name_id",
                  "project_id", "attach_status", "created_at", "updated_at",
                  "provider_location"):
        assert field in shown
    assert shown["host"] == "node1@b#b" and shown["migration_status"] == "success"
    assert sha256_of(shown["provider_location"]) == before

    progress = json.loads(run(conf, "progress", volume["id"], "--format", "json").stdout)
    assert progress["migration_status"] == "success"
    assert progress["percent"] == 100.0
    assert progress["bytes_copied"] == progress["bytes_total"] == 64 * MiB

    listed = json.loads(run(conf, "list", "--migration-status", "success",
                            "--format", "json").stdout)
    assert [v["id"] for v in listed] == [volume["id"]]
    assert json.loads(run(conf, "list", "--migration-status", "error",
                          "--format", "json").stdout) == []
    table = run(conf, "list").stdout
    assert volume["id"] in table and "success" in table

    # The service log carries the progress lines and the notifications.
    log = (tmp_path / "state" / "volmigrate.log").read_text()
    assert f"Migration of volume {volume['id']}: 100% ({64 * MiB} of {64 * MiB} bytes)" in log
    for event in ("start", "progress", "end"):
        assert f'"event_type": "volume.migration.{event}"' in log

    assert "attached" in run(conf, "attach", volume["id"]).stdout
    assert "detached" in run(conf, "detach", volume["id"]).stdout
    run(conf, "delete", volume["id"])
    assert json.loads(run(conf, "list", "--all", "--format", "json").stdout) == []


def test_rejected_migration_exits_non_zero(conf):
    volume = json.loads(run(conf, "create", "--size", "1M", "--host", "node1@a",
                            "--format", "json").stdout)
    out = run(conf, "migrate", volume["id"], "node1@a", check=False)
    assert out.returncode == 1
    assert out.stdout.strip() == (f"Your migration request failed to process: volume "
                                  f"{volume['id']} is already on host node1@a#a")
    out = run(conf, "migrate", volume["id"], "nonsense", check=False)
    assert out.returncode == 1 and "is malformed" in out.stdout


def test_failed_migration_exits_non_zero_with_wait(tmp_path):
    conf = write_config(tmp_path, backends={
        "a": {}, "b": {"volume_driver": "vmtest_faulty:FaultyLocalDriver",
                       "fail_on": "create"}})
    volume = json.loads(run(conf, "create", "--size", "1M", "--host", "node1@a",
                            "--format", "json").stdout)
    out = run(conf, "migrate", volume["id"], "node1@b", "--wait", check=False)
    assert out.returncode == 1
    assert "injected failure of create" in out.stderr
    shown = json.loads(run(conf, "show", volume["id"], "--format", "json").stdout)
    assert shown["migration_status"] == "error" and shown["host"] == "node1@a#a"


@pytest.mark.parametrize("args,message", [
    (["create", "--size", "12Q", "--host", "node1@a"], "invalid size '12Q'"),
    (["create", "--size", "1M", "--host", "node1@zz"], "no enabled backend 'zz'"),
    (["show", "no-such-volume"], "volume no-such-volume not found"),
    (["progress", "no-such-volume"], "volume no-such-volume not found"),
    (["list", "--migration-status", "weird"], "unknown migration status 'weird'"),
])
def test_bad_input_messages(conf, args, message):
    out = run(conf, *args, check=False)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_config_file_message(tmp_path):
    conf = write_config(tmp_path, migration_progress_report_interval="soon")
    out = run(conf, "list", check=False)
    assert out.returncode != 0
    assert "invalid value for [DEFAULT] migration_progress_report_interval" in out.stderr
    assert "Traceback" not in out.stderr
    out = subprocess.run([CLI, "--config-file", str(tmp_path / "missing.conf"), "list"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "missing.conf" in out.stderr


def test_demo_runs():
    out = subprocess.run([CLI, "demo", "--size", "32M"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "identical" in out.stdout
    assert "volume.migration.end" in out.stdout


def test_sample_config_is_current(tmp_path):
    generated = tmp_path / "volmigrate.conf.sample"
    generator = os.path.join(os.path.dirname(sys.executable), "oslo-config-generator")
    subprocess.run([generator, "--config-file",
                    os.path.join(REPO, "etc", "volmigrate", "volmigrate-config-generator.conf"),
                    "--output-file", str(generated)], check=True, capture_output=True)
    committed = open(os.path.join(REPO, "etc", "volmigrate", "volmigrate.conf.sample")).read()
    assert generated.read_text() == committed, (
        "etc/volmigrate/volmigrate.conf.sample is stale: regenerate it with "
        "`oslo-config-generator --config-file etc/volmigrate/volmigrate-config-generator.conf`")
