"""SIGTERM stops the service at a durable checkpoint; the next start resumes the copy."""

import re
import signal
import time

from apitest import GiB
from vmtest import MiB, fill_random, sha256_of, wait_for


def test_sigterm_stops_copies_durably_and_the_next_start_resumes_them(make_api):
    # 1 MiB/s holds the copy of 64 MiB of data for a minute: long enough to stop it.
    api = make_api(volume_copy_bps_limit=MiB, migration_checkpoint_size="1M").start()
    volume = api.create_volume("v")
    vid = volume["id"]
    digest = fill_random(api.data_file(api.volume(vid)), 64 * MiB)
    dest = api.other_host(vid)
    assert api.action(vid, {"os-migrate_volume": {"host": dest}}).status_code == 202

    def copied() -> int:
        return api.action(vid, {"os-migration_get_progress": None}).json()[
            "details"]["bytes_copied"]

    wait_for(lambda: copied() >= 3 * MiB)
    started = time.monotonic()
    assert api.stop(signal.SIGTERM, timeout=30) == 0
    assert time.monotonic() - started < 10
    said = re.search(r"migration \S+ stopped at byte (\d+) \(durable\); it resumes at the "
                     r"next start", api.output())
    assert said and int(said.group(1)) >= 3 * MiB, api.output()

    # Restarted without the rate limit: recovery resumes from the checkpoint.
    api.write_config(volume_copy_bps_limit=0, migration_checkpoint_size="1M",
                     osapi_volume_listen_port=api.port)
    api.start()
    done = api.wait_migration(vid)
    assert (done["migration_status"], done["status"]) == ("success", "available")
    assert done["os-vol-host-attr:host"] == dest
    assert sha256_of(api.data_file(done)) == digest
    progress = api.action(vid, {"os-migration_get_progress": None}).json()
    assert progress["task_state"] == "migration_success"
    assert progress["details"]["bytes_total"] == GiB


def test_after_kill_9_the_next_start_resumes_the_migration(make_api):
    api = make_api(volume_copy_bps_limit=MiB, migration_checkpoint_size="1M").start()
    volume = api.create_volume("v")
    vid = volume["id"]
    digest = fill_random(api.data_file(api.volume(vid)), 16 * MiB)
    dest = api.other_host(vid)
    assert api.action(vid, {"os-migrate_volume": {"host": dest,
                                                  "lock_volume": True}}).status_code == 202
    wait_for(lambda: api.action(vid, {"os-migration_get_progress": None}).json()[
        "details"]["bytes_durable"] >= 2 * MiB)
    api.stop(signal.SIGKILL)
    api.write_config(volume_copy_bps_limit=0, migration_checkpoint_size="1M",
                     osapi_volume_listen_port=api.port)
    api.start()
    done = api.wait_migration(vid)
    assert (done["migration_status"], done["status"]) == ("success", "available")
    assert done["os-vol-host-attr:host"] == dest
    assert sha256_of(api.data_file(done)) == digest


def test_sigterm_leaves_a_backend_move_to_the_next_start(make_api, make_array):
    # The simulated array moves the 1 GiB volume at 64 MiB/s: 16 s, longer than the stop.
    array = make_array(migrate_rate="64M")
    api = make_api(sections={"svc": array.backend()}, enabled_backends="lvm1,lvm2,svc").start()
    api.create_type("array", backend="svc")
    vid = api.create_volume("v", volume_type="array")["id"]
    source = api.host_of(vid)
    dest = "node1@svc#" + ("pool2" if source.endswith("#pool1") else "pool1")
    assert api.action(vid, {"os-migrate_volume": {"host": dest}}).status_code == 202
    wait_for(lambda: api.action(vid, {"os-migration_get_progress": None}).json()[
        "details"]["bytes_copied"] > 0)

    started = time.monotonic()
    assert api.stop(signal.SIGTERM, timeout=30) == 0
    # Nothing of ours to make durable: not waited for (it once waited for the deadline
    # and said "stopped at byte 0").
    assert time.monotonic() - started < 10
    assert re.search(r"migration \S+ waits for the backend's move; it resumes at the next "
                     r"start", api.output()), api.output()

    api.write_config(**api.options)
    api.start()
    done = api.wait_migration(vid)
    assert (done["migration_status"], done["status"]) == ("success", "available")
    assert done["os-vol-host-attr:host"] == dest
    assert array.vdisks() == {f"volume-{vid}": dest.rsplit("#", 1)[1]}
