"""Recovery after kill -9 at ~50% of a 1 GiB migration: how fast, how much re-copied.

    .venv/bin/python benchmarks/bench_recovery.py [--size 1G] [--checkpoint 256M]

A `volmigrate migrate` process copies at full speed and is killed with
SIGKILL once half the volume is reported copied; then a MigrationService
starts in this process (start() recovers) and we time until the resumed copy
moves past the checkpoint. Prints the re-copied bytes against the remaining
half, with the checkpoint interval as the bound.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from bench_setup import service, write_config
from volmigrate.common.units import parse_size, parse_volume_size

MiB = 1 << 20


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * MiB), b""):
            digest.update(block)
    return digest.hexdigest()



def measure(size: int, checkpoint_text: str, work: str) -> dict:
    """Kill a migration of `size` bytes at 50% and recover it; return what was measured."""
    checkpoint = parse_size(checkpoint_text)
    cli = os.path.join(os.path.dirname(sys.executable), "volmigrate")
    conf_path = write_config(work, migration_progress_report_interval=0.02,
                             migration_checkpoint_size=checkpoint_text)
    svc = service(conf_path)
    svc.start(recover=False)
    volume = svc.create_volume(size, "bench@a")
    subprocess.run(["dd", "if=/dev/urandom", f"of={volume['provider_location']}", "bs=4M",
                    f"count={size // (4 * MiB)}", "conv=notrunc", "status=none"], check=True)
    before = sha256(volume["provider_location"])
    svc.stop()

    proc = subprocess.Popen([cli, "--config-file", conf_path, "migrate", volume["id"],
                             "bench@b"], stdout=subprocess.DEVNULL)
    position = 0
    while proc.poll() is None:
        migration = svc.db.latest_migration(volume["id"])
        position = migration["progress_bytes"] if migration else 0
        if position >= size // 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    if proc.returncode != -signal.SIGKILL:
        raise RuntimeError("the migration ended before it could be killed; use a larger size")
    time.sleep(1)  # let an orphaned copy finish its run, as after a real crash
    durable = svc.db.latest_migration(volume["id"])["bytes_durable"]

    svc = service(conf_path)
    started = time.monotonic()
    svc.start()  # recovers
    start_returned = time.monotonic() - started
    moving = None
    while moving is None:
        info = svc.get_migration_progress(volume["id"])
        if info["bytes_copied"] > durable or info["state"] != "running":
            moving = time.monotonic() - started
        time.sleep(0.001)
    migration = svc.wait(volume["id"])
    svc.stop()
    log_path = os.path.join(work, "state", "volmigrate.log")
    log = open(log_path).read() if os.path.exists(log_path) else ""
    after = sha256(svc.get_volume(volume["id"])["provider_location"])
    match = re.search(r"the copy wrote (\d+) bytes", log)
    return {"position": position, "durable": durable, "remaining": size - position,
            "rewritten": size - durable, "checkpoint": checkpoint,
            "start_returned": start_returned, "moving": moving,
            "copy_count": int(match.group(1)) if match else None,
            "state": migration["state"], "identical": after == before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G")
    parser.add_argument("--checkpoint", default="256M")
    args = parser.parse_args()
    size = parse_volume_size(args.size)
    with tempfile.TemporaryDirectory(prefix="volmigrate-bench-", dir=os.getcwd()) as work:
        r = measure(size, args.checkpoint, work)
    remaining, written, checkpoint = r["remaining"], r["rewritten"], r["checkpoint"]
    print(f"{args.size} migration killed at {r['position'] / size:.1%} "
          f"(reported progress {r['position']} bytes, durable checkpoint {r['durable']})")
    print(f"  service start() returned in       {r['start_returned'] * 1000:8.1f} ms")
    print(f"  resumed copy moving again after   {r['moving'] * 1000:8.1f} ms")
    print(f"  re-copied by the resumed copy     {written / MiB:8.1f} MiB "
          f"(remaining half {remaining / MiB:.1f} MiB; bound remaining + checkpoint "
          f"{(remaining + checkpoint) / MiB:.1f} MiB; ratio to remaining "
          f"{written / remaining:.3f})")
    if r["copy_count"] is not None:
        print(f"  the copy's own count              {r['copy_count'] / MiB:8.1f} MiB")
    print(f"  final state {r['state']}, data identical: {r['identical']}")


if __name__ == "__main__":
    main()
