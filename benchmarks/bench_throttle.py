"""Achieved copy rate against volume_copy_bps_limit, for the dd and the file-I/O copy.

    .venv/bin/python benchmarks/bench_throttle.py [--size 128M]

Prints achieved/limit for a few limits; the contract is within 10%.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from volmigrate.common.units import parse_volume_size  # noqa: E402
from volmigrate.flows.datamover import DdCopy, FileCopy  # noqa: E402

MiB = 1 << 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="128M")
    args = parser.parse_args()
    size = parse_volume_size(args.size)
    with tempfile.TemporaryDirectory(prefix="volmigrate-bench-", dir=os.getcwd()) as work:
        src, dst = os.path.join(work, "src"), os.path.join(work, "dst")
        with open(src, "wb") as f:
            f.write(os.urandom(size))
        print(f"{args.size} copy; achieved rate / volume_copy_bps_limit:")
        for limit_mib in (16, 64, 256):
            limit = limit_mib * MiB
            for name in ("dd", "file-io"):
                with open(dst, "wb") as f:
                    f.truncate(size)
                start = time.monotonic()
                if name == "dd":
                    DdCopy(src, dst, size, MiB, limit, threading.Event(), checkpoint_bytes=256 * MiB).run()
                else:
                    with open(src, "rb") as s, open(dst, "r+b") as d:
                        FileCopy(s, d, size, MiB, limit, threading.Event(), checkpoint_bytes=256 * MiB).run()
                achieved = size / (time.monotonic() - start)
                print(f"  limit {limit_mib:4d} MiB/s  {name:<8} {achieved / MiB:7.1f} MiB/s"
                      f"   ratio {achieved / limit:5.3f}")


if __name__ == "__main__":
    main()
