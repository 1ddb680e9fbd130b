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
from volmigrate.engine.units import parse_size, parse_volume_size

MiB = 1 << 20


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * MiB), b""):
            digest.update(block)
    return digest.hexdigest()



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G")
    parser.add_argument("--checkpoint", default="256M")
    args = parser.parse_args()
    size, checkpoint = parse_volume_size(args.size), parse_size(args.checkpoint)
    cli = os.path.join(os.path.dirname(sys.executable), "volmigrate")

    with tempfile.TemporaryDirectory(prefix="volmigrate-bench-", dir=os.getcwd()) as work:
        conf_path = write_config(work, migration_progress_report_interval=0.02,
                                 migration_checkpoint_size=args.checkpoint)
        svc = service(conf_path)
        svc.start(recover=False)
        volume = svc.create_volume(size, "bench@a")
        subprocess.run(["dd", "if=/dev/urandom", f"of={volume['provider_location']}", "bs=4M",
                        f"count={size // (4 * MiB)}", "conv=notrunc", "status=none"],
                       check=True)
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
            sys.exit("the migration ended before it could be killed; use a larger --size")
        time.sleep(1)  # let the orphaned dd run finish, as after a real crash
        durable = svc.db.latest_migration(volume["id"])["bytes_copied"]

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
        log = open(os.path.join(work, "state", "volmigrate.log")).read() if os.path.exists(
            os.path.join(work, "state", "volmigrate.log")) else ""
        after = sha256(svc.get_volume(volume["id"])["provider_location"])

    remaining = size - position
    written = size - durable
    match = re.search(r"the copy wrote (\d+) bytes", log)
    print(f"{args.size} migration killed at {position / size:.1%} "
          f"(reported progress {position} bytes, durable checkpoint {durable})")
    print(f"  service start() returned in       {start_returned * 1000:8.1f} ms")
    print(f"  resumed copy moving again after   {moving * 1000:8.1f} ms")
    print(f"  re-copied by the resumed copy     {written / MiB:8.1f} MiB "
          f"(remaining half {remaining / MiB:.1f} MiB; bound remaining + checkpoint "
          f"{(remaining + checkpoint) / MiB:.1f} MiB; ratio to remaining "
          f"{written / remaining:.3f})")
    if match:
        print(f"  the copy's own count              {int(match.group(1)) / MiB:8.1f} MiB")
    print(f"  final state {migration['state']}, data identical: {after == before}")


if __name__ == "__main__":
    main()
