"""The rbd driver on a real single-node Ceph against Ceph's own tools, in the same run.

    .venv/bin/python benchmarks/run.py --only rbd [--quick] [--rounds N] [--output FILE]

Issue 16, item 9. Each measurement starts its own cluster (tools/ceph_cluster.py:
one monitor, one memstore OSD, one manager) in the run's scratch directory and
destroys it at the end; without Ceph's packages it is skipped, saying so.
Every figure is the median of rounds that take strict turns with their peer
(the same data, the same cluster, the same minute), as in benchmarks/run.py:

a. RBD -> RBD host copy (force_host_copy, two backends on two pools), 1 GiB of
   random data: our whole migration (accept to end, through MigrationService)
   against ``rbd export p/src - | rbd import - q/dst``;
b. an 8 GiB thin image with 2% of its objects written (one object in 50): ours
   (host copy) against ``rbd cp`` and against export | import;
c. pool to pool, driver-assisted (Ceph's live migration), 1 GiB: our whole
   migration against ``rbd migration prepare``/``execute``/``commit`` by hand;
d. LVM -> RBD, 1 GiB (the tests' LoopVG: lvm2 on a loop device, reached by
   the LVM driver's loop activation, as on hosts without device-mapper, like
   this one): ours against ``rbd import`` of the LV's device (a loop device
   over the LV's extents, the one the driver gives the copy; connected
   before the peer's clock starts). ``dd`` into a mapped image is not
   possible here: no rbd kernel module (krbd).

Each side gets a warm-up turn first, not counted (the first migration of a
service loads its drivers and connects, the first ``rbd`` reads its
libraries). The peers' times include starting their ``rbd`` processes
(about 0.1 s each); ours exclude starting the service, which a user's
``volmigrate serve`` has done once, and include all the rest a user waits
for: creating and opening the destination, the copy, its durable end, the
proof of the destination, deleting the source. Ceph's OSD (memstore: the
data in its memory, so the figures are CPU and protocol, not disks) and
both sides share the host's cores, and other work runs beside them: the
load average is recorded with every row, and the CPU time each side made
its client (this process, or the ``rbd`` processes) and the OSD spend,
which the host's drift moves much less than wall times.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.append(os.path.join(ROOT, "tools"))

import ceph_cluster  # noqa: E402

from bench_setup import service  # noqa: E402
from volmigrate.common.volumes import volume_ref  # noqa: E402
from volmigrate.drivers import rbd_client  # noqa: E402
from volmigrate.engine import inspection  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
OBJECT = 4 * MiB  # rbd_store_chunk_size's default, Ceph's too
NODE = "bench"


def skip_reason() -> str | None:
    """Why these benchmarks cannot run here, or None."""
    missing = ceph_cluster.missing_packages()
    if missing:
        return f"Ceph is not installed (apt-get install {' '.join(missing)})"
    if not rbd_client.available():
        return f"Ceph's Python bindings are not installed ({rbd_client.INSTALL_HINT})"
    return None


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


class Timer:
    """Wall time and CPU time of one side: its client (this process for ours, the
    ``rbd`` processes waited for a peer's) and the cluster's OSD.

    The host is shared: wall times drift with what else runs, the CPU each
    side makes the client and the OSD spend does not.
    """

    def __init__(self, osd_pid: int, ours: bool) -> None:
        self.osd_pid, self.ours = osd_pid, ours
        self.walls: list[float] = []
        self.client: list[float] = []
        self.osd: list[float] = []

    def _osd_cpu(self) -> float:
        with open(f"/proc/{self.osd_pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _client_cpu(self) -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF if self.ours
                                   else resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def __enter__(self) -> "Timer":
        self._cpu, self._osd, self._start = self._client_cpu(), self._osd_cpu(), time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.walls.append(time.monotonic() - self._start)
            self.client.append(self._client_cpu() - self._cpu)
            self.osd.append(self._osd_cpu() - self._osd)

    def drop_first(self) -> None:
        """Forget the warm-up round."""
        for values in (self.walls, self.client, self.osd):
            del values[0]

    def median(self) -> float:
        return statistics.median(self.walls)

    def cpu(self) -> str:
        return (f"CPU client {statistics.median(self.client):.2f} + OSD "
                f"{statistics.median(self.osd):.2f} s")

    def __str__(self) -> str:
        return str([round(t, 2) for t in self.walls])


def median(times: list[float]) -> float:
    return statistics.median(times)


def fastest(ours: Timer, peer: Timer) -> str:
    return f"fastest rounds {min(ours.walls):.2f} / {min(peer.walls):.2f} s"


class Cluster:
    """A throwaway Ceph cluster with a service whose backends are pools of it."""

    def __init__(self, work: str, log) -> None:
        self.work, self.log = work, log
        self.ceph = ceph_cluster.CephCluster(os.path.join(work, "ceph"))
        self.svc = None
        started = time.monotonic()
        self.ceph.start()
        self.say(f"  ceph cluster started in {time.monotonic() - started:.1f} s "
                 f"({self.ceph.dir})")

    def say(self, text: str) -> None:
        print(text, file=self.log, flush=True)

    def timer(self, ours: bool) -> Timer:
        return Timer(self.ceph._state()["pids"]["osd.0"], ours)

    def pool(self, name: str) -> str:
        self.ceph.create_pool(name)
        return name

    def start_service(self, backends: dict[str, dict], **defaults) -> None:
        lines = ["[DEFAULT]", f"state_path = {os.path.join(self.work, 'state')}",
                 f"host = {NODE}", f"enabled_backends = {','.join(backends)}",
                 "migration_progress_report_interval = 1"]
        lines += [f"{k} = {v}" for k, v in defaults.items()]
        for name, options in backends.items():
            lines += [f"[{name}]"] + [f"{k} = {v}" for k, v in options.items()]
        path = os.path.join(self.work, "bench.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        self.svc = service(path)
        self.svc.start(recover=False)

    def rbd_backend(self, pool: str) -> dict:
        return {"volume_driver": "rbd", "rbd_pool": pool, "rbd_ceph_conf": str(self.ceph.conf)}

    # -- the cluster's own tools ----------------------------------------------------
    def rbd(self, *args: str) -> None:
        quiet = [] if args[:2] == ("migration", "prepare") else ["--no-progress"]  # refused
        self.ceph.rbd(*quiet, *args)

    def rbd_pipe(self, source: str, dest: str) -> None:
        """``rbd export source - | rbd import - dest``."""
        conf = ["--conf", str(self.ceph.conf), "--no-progress"]
        export = subprocess.Popen(["rbd", *conf, "export", source, "-"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        imported = subprocess.run(["rbd", *conf, "import", "-", dest], stdin=export.stdout,
                                  capture_output=True, text=True)
        export.stdout.close()
        err = export.stderr.read().decode()
        if export.wait() != 0 or imported.returncode != 0:
            raise RuntimeError(f"rbd export | rbd import failed: {err} {imported.stderr}")

    def used(self, spec: str) -> int:
        """Bytes the image's objects hold (``rbd du``, from the object map)."""
        out = json.loads(subprocess.run(
            ["rbd", "--conf", str(self.ceph.conf), "du", "--format", "json", spec],
            check=True, capture_output=True, text=True).stdout)
        return sum(image["used_size"] for image in out["images"])

    # -- volumes ----------------------------------------------------------------------
    def spec(self, volume_id: str) -> str:
        """pool/image of a volume on an RBD backend (rbd://fsid/pool/image)."""
        return self.svc.get_volume(volume_id)["provider_location"].split("/", 3)[3]

    def backend_of(self, volume_id: str) -> str:
        return self.svc.get_volume(volume_id)["host"].split("@", 1)[1].split("#", 1)[0]

    def write_objects(self, volume_id: str, objects) -> None:
        """Random data in the given 4 MiB objects of an RBD volume, flushed."""
        rados, rbd = rbd_client.bindings()
        pool, name = self.spec(volume_id).split("/")
        client = rados.Rados(conffile=str(self.ceph.conf))
        client.connect()
        try:
            with client.open_ioctx(pool) as ioctx, rbd.Image(ioctx, name) as image:
                for index in objects:
                    image.write(os.urandom(OBJECT), index * OBJECT)
                image.flush()
        finally:
            client.shutdown()

    def migrate(self, volume_id: str, dest: str, timer: Timer | None = None,
                force_host_copy: bool = False, case: str | None = None) -> float | None:
        """Migrate (timed by `timer`, if given); the seconds of its copy-data atom."""
        with timer or contextlib.nullcontext():
            response = self.svc.migrate_volume(volume_id, f"{NODE}@{dest}",
                                               force_host_copy=force_host_copy)
            migration = self.svc.wait(response.migration_id)
        if migration["state"] != "success":
            raise RuntimeError(f"migration to {dest} failed: {migration['error']}")
        if case and migration["case"] != case:
            raise RuntimeError(f"migration to {dest} was {migration['case']}, not {case}")
        shown = inspection.show_flow(self.svc.db, self.svc.tf_backend, migration["id"])
        atom = next((a for a in shown["atoms"] if a["name"] == "copy-data"), None)
        if atom is None:
            return None
        return float(atom["timestamps"]["SUCCESS"]) - float(atom["timestamps"]["RUNNING"])

    def destroy(self) -> None:
        if self.svc is not None:
            self.svc.stop()
            self.svc = None
        self.ceph.destroy()


def turns(rounds: int, *sides) -> None:
    """A warm-up turn of each side (dropped by the caller), then strict turns, as
    run.py's ``alternate``: the first migration of a service loads its drivers and
    connects to the cluster, the first ``rbd`` reads its libraries from the disk."""
    for _ in range(rounds + 1):
        for side in sides:
            side()


def row(name, ours, peer, unit, ratio, target, passed, note) -> dict:
    return dict(name=name, ours=ours, baseline=peer, unit=unit, ratio=ratio, target=target,
                passed=passed, note=note)


def other(backend: str) -> str:
    return "r2" if backend == "r1" else "r1"


# -- a. RBD -> RBD host copy, dense --------------------------------------------------
def host_copy_dense(c: Cluster, size: int, rounds: int) -> list[dict]:
    pools = {"r1": c.pool("bench1"), "r2": c.pool("bench2")}
    c.start_service({name: c.rbd_backend(pool) for name, pool in pools.items()})
    volume = c.svc.create_volume(size, f"{NODE}@r1")["id"]
    c.write_objects(volume, range(size // OBJECT))
    ours, peer, copies = c.timer(True), c.timer(False), []

    def pipe() -> None:
        dest = f"{pools[other(c.backend_of(volume))]}/peer"
        with peer:
            c.rbd_pipe(c.spec(volume), dest)
        c.rbd("rm", dest)

    def migration() -> None:
        copies.append(c.migrate(volume, other(c.backend_of(volume)), ours,
                                force_host_copy=True, case="host-copy-file-io"))

    before = load()
    turns(rounds, pipe, migration)
    ours.drop_first()
    peer.drop_first()
    copies.pop(0)
    c.say(f"  rbd host copy: ours {ours}, copy-data {[round(t, 2) for t in copies]}, "
          f"export|import {peer}")
    o, p = ours.median(), peer.median()
    copy = median(copies)
    return [row(f"rbd a. RBD -> RBD host copy {size // MiB} MiB dense: export|import / "
                f"our whole migration (speed-up)", o, p, "s", p / o, ">= 1.2", p / o >= 1.2,
                f"our copy alone {copy:.2f} s (speed-up {p / copy:.2f}); {fastest(ours, peer)};"
                f" ours {ours.cpu()}, export|import {peer.cpu()}; {before} -> {load()}")]


# -- b. thin 8 GiB, 2% of its objects written -----------------------------------------
def thin(c: Cluster, size: int, rounds: int) -> list[dict]:
    pools = {"r1": c.pool("thin1"), "r2": c.pool("thin2")}
    c.start_service({name: c.rbd_backend(pool) for name, pool in pools.items()})
    volume = c.svc.create_volume(size, f"{NODE}@r1")["id"]
    objects = range(0, size // OBJECT, 50)  # 2%, spread evenly
    c.write_objects(volume, objects)
    source_used = c.used(c.spec(volume))
    ours, cp, pipe, copies = c.timer(True), c.timer(False), c.timer(False), []
    dest_used = {}

    def peers() -> None:
        source = c.spec(volume)
        dest = f"{pools[other(c.backend_of(volume))]}/peer"
        with cp:
            c.rbd("cp", source, dest)
        dest_used["rbd cp"] = c.used(dest)
        c.rbd("rm", dest)
        with pipe:
            c.rbd_pipe(source, dest)
        dest_used["export|import"] = c.used(dest)
        c.rbd("rm", dest)

    def migration() -> None:
        copies.append(c.migrate(volume, other(c.backend_of(volume)), ours,
                                force_host_copy=True, case="host-copy-file-io"))
        dest_used["ours"] = c.used(c.spec(volume))

    before = load()
    turns(rounds, peers, migration)
    for side in (ours, cp, pipe):
        side.drop_first()
    copies.pop(0)
    c.say(f"  rbd thin: ours {ours}, copy-data {[round(t, 2) for t in copies]}, rbd cp {cp}, "
          f"export|import {pipe}")
    o, p, k = ours.median(), pipe.median(), cp.median()
    name = f"rbd b. thin {size // GiB} GiB, {len(objects)} of {size // OBJECT} objects written"
    note = f"our copy alone {median(copies):.2f} s; ours {ours.cpu()}; {before} -> {load()}"
    return [
        row(f"{name}: export|import / our host copy (speed-up)", o, p, "s", p / o, ">= 5",
            p / o >= 5, f"{note}; export|import {pipe.cpu()}; {fastest(ours, pipe)}"),
        row(f"{name}: our host copy / rbd cp", o, k, "s", o / k, "<= 1.0", o / k <= 1.0,
            f"{note}; rbd cp {cp.cpu()}; {fastest(ours, cp)}"),
        row(f"{name}: used at the destination / at the source (rbd du)", dest_used["ours"],
            source_used, "bytes", dest_used["ours"] / source_used, "<= 1.0",
            dest_used["ours"] <= source_used,
            f"rbd cp {dest_used['rbd cp']}, export|import {dest_used['export|import']}"),
    ]


# -- c. pool to pool, driver-assisted (live migration) -------------------------------
def live(c: Cluster, size: int, rounds: int) -> list[dict]:
    pools = {"r1": c.pool("live1"), "r2": c.pool("live2")}
    c.start_service({name: c.rbd_backend(pool) for name, pool in pools.items()})
    volume = c.svc.create_volume(size, f"{NODE}@r1")["id"]
    c.write_objects(volume, range(size // OBJECT))
    c.rbd("cp", c.spec(volume), f"{pools['r1']}/peer")  # the same data, for the peer
    where = {"peer": "r1"}
    ours, peer = c.timer(True), c.timer(False)

    def by_hand() -> None:
        source, dest = pools[where["peer"]], pools[other(where["peer"])]
        with peer:
            c.rbd("migration", "prepare", f"{source}/peer", f"{dest}/peer")
            c.rbd("migration", "execute", f"{dest}/peer")
            c.rbd("migration", "commit", f"{dest}/peer")
        where["peer"] = other(where["peer"])

    def migration() -> None:
        c.migrate(volume, other(c.backend_of(volume)), ours, case="driver-assisted")

    before = load()
    turns(rounds, by_hand, migration)
    ours.drop_first()
    peer.drop_first()
    c.say(f"  rbd live migration: ours {ours}, by hand {peer}")
    o, p = ours.median(), peer.median()
    return [row(f"rbd c. pool -> pool {size // MiB} MiB, live migration: our whole migration /"
                f" rbd migration prepare+execute+commit", o, p, "s", o / p, "<= 1.1",
                o / p <= 1.1, f"{fastest(ours, peer)}; ours {ours.cpu()}, by hand "
                f"{peer.cpu()}; {before} -> {load()}")]


# -- d. LVM -> RBD ---------------------------------------------------------------------
def lvm_to_rbd(c: Cluster, size: int, rounds: int) -> list[dict]:
    if os.path.join(ROOT, "tests") not in sys.path:
        sys.path.append(os.path.join(ROOT, "tests"))
    from vmtest import HAS_LVM, NO_LVM_REASON, LoopVG, write_volume

    if not HAS_LVM:
        c.say(f"  rbd d. LVM -> RBD skipped: {NO_LVM_REASON}")
        return []
    pool = c.pool("fromlvm")
    vg = LoopVG(c.work, 2 * size + 256 * MiB)
    try:
        c.start_service({"lvm": vg.backend(), "r1": c.rbd_backend(pool)})
        volume = c.svc.create_volume(size, f"{NODE}@lvm")
        write_volume(c.svc, volume)
        volume = volume["id"]
        driver = c.svc.drivers["lvm"]
        ours, peer, copies = c.timer(True), c.timer(False), []

        def rbd_import() -> None:
            ref = volume_ref(c.svc.get_volume(volume))
            connection = driver.connect_volume(ref, False)  # a loop device, as ours gets
            try:
                with peer:
                    c.rbd("import", connection["path"], f"{pool}/peer")
            finally:
                driver.disconnect_volume(ref, connection)
            c.rbd("rm", f"{pool}/peer")

        def migration() -> None:
            copies.append(c.migrate(volume, "r1", ours, case="host-copy-file-io"))
            c.migrate(volume, "lvm")  # back, not timed

        before = load()
        turns(rounds, rbd_import, migration)
        ours.drop_first()
        peer.drop_first()
        copies.pop(0)
        c.say(f"  rbd LVM -> RBD: ours {ours}, copy-data {[round(t, 2) for t in copies]}, "
              f"rbd import {peer}")
        o, p = ours.median(), peer.median()
        return [row(f"rbd d. LVM -> RBD {size // MiB} MiB: our whole migration / rbd import "
                    f"of the LV's device", o, p, "s", o / p, "(ratio, no target)", None,
                    f"our copy alone {median(copies):.2f} s; {fastest(ours, peer)}; ours "
                    f"{ours.cpu()}, rbd import {peer.cpu()}; the tests' LoopVG, the LVM driver's "
                    f"loop activation; {before} -> {load()}")]
    finally:
        if c.svc is not None:
            c.svc.stop()
            c.svc = None
        vg.destroy()


BENCHMARKS = {"host_copy_dense": host_copy_dense, "thin": thin, "live": live,
              "lvm_to_rbd": lvm_to_rbd}


def measure(work: str, rounds: int = 7, quick: bool = False, only=None,
            log=sys.stderr) -> list[dict]:
    """The rows for benchmarks/run.py; [] (with a message) where Ceph is not installed."""
    reason = skip_reason()
    if reason:
        print(f"  rbd: skipped: {reason}", file=log, flush=True)
        return []
    sizes = {"host_copy_dense": 256 * MiB if quick else GiB,
             "thin": 2 * GiB if quick else 8 * GiB,
             "live": 256 * MiB if quick else GiB,
             "lvm_to_rbd": 256 * MiB if quick else GiB}
    rows = []
    for name, bench in BENCHMARKS.items():
        if only and name not in only:
            continue
        folder = os.path.join(work, f"rbd-{name}")
        os.makedirs(folder)
        started = time.monotonic()
        print(f"  rbd {name} ...", file=log, flush=True)
        cluster = Cluster(folder, log)
        try:
            rows += bench(cluster, sizes[name], rounds)
        finally:
            cluster.destroy()
        print(f"  rbd {name}: {time.monotonic() - started:.1f} s", file=log, flush=True)
    return rows


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=list(BENCHMARKS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="volmigrate-bench-", dir=os.getcwd()) as work:
        for r in measure(work, args.rounds, args.quick, args.only):
            print(f"{r['name']:<100} {r['ours']:>10.3f} {r['baseline']:>10.3f} "
                  f"{r['ratio']:>7.3f} {r['target']:<12} {r['passed']}  {r['note']}")
