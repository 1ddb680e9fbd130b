"""Progress: reported every interval while the copy runs, logged, notified, stored."""

import json
import logging
import os
import subprocess
import sys
import time

from vmtest import (HOLDABLE, PATIENCE, MiB, fill_random, host, notifications, sha256_of,
                    wait_for)

SIZE = 64 * MiB
RATE = 32 * MiB  # ~2 s copy
# Copies held on purpose (copy_gate) after their first MiB: they cannot end
# before a check made while they run, however slow the machine; the tests
# then abort them.
HELD_SIZE = 4 * MiB


def test_progress_reports_during_a_two_second_copy(make_service, caplog):
    caplog.set_level(logging.INFO, logger="volmigrate")
    svc = make_service(volume_copy_bps_limit=RATE, migration_progress_report_interval=0.1)
    volume = svc.create_volume(SIZE, host("a"))
    fill_random(volume["provider_location"], SIZE)
    started = time.monotonic()
    response = svc.migrate_volume(volume["id"], host("b"))
    migration = svc.wait(response.migration_id, PATIENCE)
    elapsed = time.monotonic() - started
    assert migration["state"] == "success"

    events = notifications()
    types = [e["event_type"] for e in events]
    assert types[0] == "volume.migration.start"
    assert types[-1] == "volume.migration.end"
    assert types.count("volume.migration.end") == 1
    progress = [e["payload"] for e in events if e["event_type"] == "volume.migration.progress"]
    # About one report per 0.1 s of a ~2 s copy; at least 3, strictly increasing.
    assert len(progress) >= 3, progress
    copied = [p["bytes_copied"] for p in progress]
    assert copied == sorted(set(copied))
    percents = [p["percent"] for p in progress]
    assert percents == sorted(percents) and len(set(percents)) >= 3
    assert progress[-1]["percent"] == 100.0
    for p in progress:
        assert p["volume_id"] == volume["id"] and p["bytes_total"] == SIZE
        assert p["source_host"] == f"{host('a')}#a"
        assert p["destination_host"] == f"{host('b')}#b"
    assert all(e["publisher_id"] == f"volume.{host('a')}" for e in events)
    # Nothing after the end notification.
    assert types.index("volume.migration.end") == len(types) - 1

    # Each report is also a log line and is stored on the migration row.
    lines = [r.getMessage() for r in caplog.records if "Migration of volume" in r.getMessage()]
    assert len(lines) == len(progress)
    assert lines[-1] == f"Migration of volume {volume['id']}: 100% ({SIZE} of {SIZE} bytes)"
    assert migration["progress_reports"] == len(progress)
    assert migration["bytes_durable"] == SIZE and migration["percent"] == 100.0
    # The bps limit holds within 10%.
    assert elapsed >= SIZE / RATE * 0.9


def test_another_process_sees_the_progress_through_the_database(make_service, copy_gate,
                                                               tmp_path):
    svc = make_service(migration_progress_report_interval=0.1, **HOLDABLE)
    volume = svc.create_volume(HELD_SIZE, host("a"))
    before = fill_random(volume["provider_location"], HELD_SIZE)
    # The copy is held after its first MiB until the abort below, however long
    # the command takes to start and answer.
    response = copy_gate.migrate(svc, volume["id"], host("b"))
    wait_for(lambda: svc.get_migration(response.migration_id)["progress_bytes"] > 0)
    cli = os.path.join(os.path.dirname(sys.executable), "volmigrate")
    out = subprocess.run([cli, "--config-file", str(tmp_path / "volmigrate.conf"), "progress",
                          volume["id"], "--format", "json"],
                         capture_output=True, text=True, timeout=PATIENCE)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["migration_status"] == "migrating"
    assert 0 < info["percent"] < 100
    assert 0 < info["bytes_copied"] < info["bytes_total"] == HELD_SIZE
    assert info["live"] is False  # from the stored report: the copy runs in another process
    ended = svc.abort_migration(response.migration_id)
    assert ended["state"] == "error" and ended["error"] == "aborted by the administrator"
    assert sha256_of(svc.get_volume(volume["id"])["provider_location"]) == before


def test_live_progress_in_the_service_process(make_service, copy_gate):
    svc = make_service(migration_progress_report_interval=30, **HOLDABLE)
    volume = svc.create_volume(HELD_SIZE, host("a"))
    fill_random(volume["provider_location"], HELD_SIZE)
    response = copy_gate.migrate(svc, volume["id"], host("b"))
    info = svc.get_migration_progress(volume["id"])
    # No report was made yet (interval 30 s) but the copy's own position is asked.
    assert info["live"] is True and 0 < info["bytes_copied"] < HELD_SIZE
    assert svc.get_migration(response.migration_id)["progress_reports"] == 0
    ended = svc.abort_migration(response.migration_id)
    assert ended["state"] == "error"
    # Once it has ended, the progress is what the migration row says, no longer live.
    assert svc.get_migration_progress(volume["id"])["live"] is False
