"""Wall time of a generic (dd) migration against plain dd of the same file, in one run.

    .venv/bin/python benchmarks/bench_generic_migration.py [--size 1G] [--rounds 3]

Prints medians and ratios. The migration includes everything a user waits for:
accepting the request, creating and connecting the destination, the dd copy with
conv=fdatasync (the data must be durable before the source is deleted), the swap and
the deletion of the source. Baselines: `dd bs=1M` (data left in the page cache) and
`dd bs=1M conv=fdatasync` (durable, like ours).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time

from bench_setup import service, write_config
from volmigrate.common.units import parse_volume_size


def fill(path: str, size: int) -> None:
    subprocess.run(["dd", "if=/dev/urandom", f"of={path}", "bs=4M",
                    f"count={size // (4 << 20)}", "conv=notrunc", "status=none"], check=True)


def timed_dd(src: str, dst: str, extra: list[str]) -> float:
    start = time.monotonic()
    subprocess.run(["dd", f"if={src}", f"of={dst}", "bs=1M", "status=none", *extra],
                   check=True)
    elapsed = time.monotonic() - start
    os.unlink(dst)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checkpoint", default="256M",
                        help="migration_checkpoint_size (durable checkpoint interval)")
    args = parser.parse_args()
    size = parse_volume_size(args.size)

    with tempfile.TemporaryDirectory(prefix="volmigrate-bench-", dir=os.getcwd()) as work:
        conf_path = write_config(work, migration_progress_report_interval=1,
                                 migration_checkpoint_size=args.checkpoint)
        results: dict[str, list[float]] = {"dd bs=1M": [], "dd bs=1M conv=fdatasync": [],
                                           "volmigrate migrate": []}
        with service(conf_path) as svc:
            volume = svc.create_volume(size, "bench@a")
            fill(volume["provider_location"], size)
            host = "b"
            for _ in range(args.rounds):
                src = svc.get_volume(volume["id"])["provider_location"]
                scratch = os.path.join(work, "dd-copy")
                results["dd bs=1M"].append(timed_dd(src, scratch, []))
                results["dd bs=1M conv=fdatasync"].append(
                    timed_dd(src, scratch, ["conv=fdatasync"]))
                start = time.monotonic()
                response = svc.migrate_volume(volume["id"], f"bench@{host}")
                migration = svc.wait(response.migration_id)
                results["volmigrate migrate"].append(time.monotonic() - start)
                assert migration["state"] == "success", migration["error"]
                host = "a" if host == "b" else "b"

    base = statistics.median(results["dd bs=1M"])
    print(f"{args.size} dense volume, checkpoint every {args.checkpoint}, "
          f"{args.rounds} rounds, medians:")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"  {name:<26} {median:7.3f} s   {size / median / 2**20:8.1f} MiB/s   "
              f"ratio to dd bs=1M: {median / base:5.2f}")
    synced = statistics.median(results["dd bs=1M conv=fdatasync"])
    ours = statistics.median(results["volmigrate migrate"])
    print(f"  volmigrate / dd conv=fdatasync: {ours / synced:5.2f}")


if __name__ == "__main__":
    main()
