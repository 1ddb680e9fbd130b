"""Throughput of each backend-to-backend scenario against `dd bs=1M` in the same run.

    .venv/bin/python benchmarks/bench_scenarios.py [--size 256M] [--rounds 3]

Needs root, loop devices and lvm2 (the LVM backends are real lvm2 volume groups
on loop devices, the Storwize backend is the simulator over SSH on 127.0.0.1).
Each migration moves a volume of random data; its wall time (accept to end) is
compared with `dd bs=1M` and `dd bs=1M conv=fdatasync` between two files of the
same size, alternating with it, medians of the rounds. The driver-assisted move
runs on the simulator with an unlimited migrate rate, so it measures the
simulator's own copy, not a real array's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from bench_setup import service  # noqa: E402
from vmtest import LoopVG, StorwizeArray, write_volume  # noqa: E402
from volmigrate.common.units import parse_volume_size  # noqa: E402

NODE = "bench"
SCENARIOS = [  # name, source, destination, force_host_copy
    ("LVM -> LVM", "lvm1", "lvm2", False),
    ("LVM -> Storwize", "lvm1", "svc#pool2", False),
    ("Storwize -> LVM", "svc#pool1", "lvm2", False),
    ("Storwize pool1 -> pool2 (array)", "svc#pool1", "svc#pool2", False),
    ("Storwize pool1 -> pool2 (host copy)", "svc#pool1", "svc#pool2", True),
    ("local -> local stream (file I/O)", "local", "stream", False),
    ("local stream -> Storwize (file I/O)", "stream", "svc#pool1", False),
]


def write_config(work: str, backends: dict[str, dict]) -> str:
    lines = ["[DEFAULT]", f"state_path = {os.path.join(work, 'state')}", f"host = {NODE}",
             f"enabled_backends = {','.join(backends)}",
             "migration_progress_report_interval = 1"]
    for name, options in backends.items():
        lines += [f"[{name}]"] + [f"{k} = {v}" for k, v in options.items()]
    path = os.path.join(work, "bench.conf")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def timed_dd(src: str, dst: str, extra: list[str]) -> float:
    start = time.monotonic()
    subprocess.run(["dd", f"if={src}", f"of={dst}", "bs=1M", "status=none", *extra],
                   check=True)
    elapsed = time.monotonic() - start
    os.unlink(dst)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256M")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = parse_volume_size(args.size)

    with tempfile.TemporaryDirectory(prefix="volmigrate-bench-", dir=os.getcwd()) as work:
        vgs = [LoopVG(work, 4 * size + 256 * 2**20) for _ in range(2)]
        array = StorwizeArray(work, migrate_rate="1T")
        try:
            conf_path = write_config(work, {
                "lvm1": vgs[0].backend(), "lvm2": vgs[1].backend(), "svc": array.backend(),
                "local": {"volume_driver": "local"},
                # only a file-like object: migrations to and from it use the file-I/O copy
                "stream": {"volume_driver": "local", "local_access": "stream"}})
            baseline_src = os.path.join(work, "baseline")
            subprocess.run(["dd", "if=/dev/urandom", f"of={baseline_src}", "bs=1M",
                            f"count={size // 2**20}", "status=none"], check=True)
            scratch = os.path.join(work, "dd-copy")
            dd: list[float] = []
            dd_sync: list[float] = []
            ours: dict[str, list[float]] = {name: [] for name, *_ in SCENARIOS}
            with service(conf_path) as svc:
                for _ in range(args.rounds):
                    for name, source, dest, force in SCENARIOS:
                        dd.append(timed_dd(baseline_src, scratch, []))
                        dd_sync.append(timed_dd(baseline_src, scratch, ["conv=fdatasync"]))
                        volume = svc.create_volume(size, f"{NODE}@{source}")
                        write_volume(svc, volume)
                        start = time.monotonic()
                        response = svc.migrate_volume(volume["id"], f"{NODE}@{dest}",
                                                      force_host_copy=force)
                        migration = svc.wait(response.migration_id)
                        ours[name].append(time.monotonic() - start)
                        assert migration["state"] == "success", migration["error"]
                        assert migration["case"] != "driver-assisted" or not force
                        svc.delete_volume(volume["id"])
        finally:
            array.kill()
            for vg in vgs:
                vg.destroy()

    base, synced = statistics.median(dd), statistics.median(dd_sync)
    mib = size / 2**20
    print(f"{args.size} volumes of random data, {args.rounds} rounds, medians; "
          f"dd bs=1M {mib / base:.0f} MiB/s, dd bs=1M conv=fdatasync {mib / synced:.0f} MiB/s")
    print(f"  {'scenario':<38} {'time':>8} {'MiB/s':>8} {'/ dd':>6} {'/ dd sync':>10}")
    for name, times in ours.items():
        median = statistics.median(times)
        print(f"  {name:<38} {median:7.3f}s {mib / median:8.1f} {median / base:6.2f} "
              f"{median / synced:10.2f}")


if __name__ == "__main__":
    main()
