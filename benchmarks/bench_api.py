"""The Block Storage API's own latency against the same calls on the embedded engine.

    .venv/bin/python benchmarks/bench_api.py [--rounds 7] [--quick]
    (or: .venv/bin/python benchmarks/run.py --only api --output /tmp/api.json)

Issue 15, item 8: `show` (GET /v3/{p}/volumes/{id}) and an accepted migrate
(POST .../action {"os-migrate_volume": {"host": ...}}, 202) from 32 concurrent
clients, p50 and p99, against `get_volume` and `migrate_volume` called by 32
threads on a MigrationService embedded in a process; and GET /volumes/detail
with 1,000 volumes against the embedded `list_volumes`.

How it is measured:

* The API side is a real `volmigrate serve` (noauth, loopback, its own state
  directory); its clients are 32 threads of this process, each with its own
  requests.Session (keep-alive: every session has made one untimed request
  before the timing starts), started together at a barrier, each sending its
  requests back to back. The latency is the client's: from sending the request
  to having read the whole answer.
* The embedded side is a MigrationService started in another process of its
  own (this file, `--embedded-worker`), configured like the server (the same
  options, the CLI's logging to <state_path>/volmigrate.log, started with
  recovery as `serve` starts it), whose 32 threads call the engine directly.
  It is a process of its own so that the two sides are alike (this process
  is only the API's client; under benchmarks/run.py its root logger takes
  every DEBUG record, which would tax the engine's calls here) and so that
  migrations held for the whole run can end with the process.
* Both sides run at once and take strict turns, round after round: API show,
  embedded show, API migrate, embedded migrate; every round the migrates go to
  volumes created for it (each accepted once, so 202), through the API on the
  API side and through the engine on the embedded side (untimed).
* A migration once accepted must not run beside the calls being timed (its
  flow costs about 0.1 s of CPU on a host of two cores): every volume holds
  1 MiB of data and the copy rate is limited to 1 KiB/s (volume_copy_bps_limit
  = 1024), so the copy moves its first block and then waits, for about 17
  minutes, for the rate. With the default migration_workers = 4 the first
  four flows are held in their copies and every later one waits in the
  queue: nothing runs beside the timed calls but what accepting a migration
  does itself (its row, and building and persisting the flow). The held
  migrations end with their processes (SIGTERM parks the server's copies).
* The same calls also run from a single client (one thread, one session), in
  the same strict turns: what one call costs with nothing queued beside it.
* p50 and p99 are over the samples of all rounds; each round's own p50 and p99
  are printed on stderr (the host drifts). The list is timed one request at a
  time, in strict turns, median of the rounds.
* Beside the latencies: the CPU time each process spent per call (the server
  and this client process; the embedded worker, callers included), from
  /proc, which the host's other load disturbs less than wall time; and how
  many connections the API clients had to open again while timed (the server
  closing or resetting keep-alive connections).

VOLMIGRATE_BENCH_PROFILE=<file> runs the server under cProfile (every request
of every server thread, summed into <file> when it stops); the timings of
such a run are the profiler's, not the API's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

MiB = 1 << 20
GiB = 1 << 30
HERE = os.path.abspath(__file__)
PROJECT = "0123abcd"
TOKEN = f"admin:{PROJECT}"
CLIENTS = 32
HOLD_BPS = 1024          # a held copy: its first 1 MiB block, then a 17-minute wait
LIST_VOLUMES = 1000
PATIENCE = 300.0

CONFIG = """\
[DEFAULT]
state_path = {folder}/state
host = bench
enabled_backends = a,b
volume_copy_bps_limit = {bps}
osapi_volume_listen = 127.0.0.1
osapi_volume_listen_port = {port}
graceful_shutdown_timeout = 2
[a]
volume_driver = local
local_volume_dir = {folder}/a
[b]
volume_driver = local
local_volume_dir = {folder}/b
"""


def write_config(folder: str, port: int = 0) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "volmigrate.conf")
    with open(path, "w", encoding="utf-8") as f:
        f.write(CONFIG.format(folder=folder, bps=HOLD_BPS, port=port))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill_head(path: str) -> None:
    """1 MiB of data at the start of the volume file: a copy has a block to move, then
    waits for the rate limit (an all-hole file would be copied at once, held by nothing)."""
    with open(path, "r+b") as f:
        f.write(os.urandom(MiB))


def data_path(folder: str, host: str, volume_id: str) -> str:
    backend = host.partition("@")[2].partition("#")[0]
    return os.path.join(folder, backend, f"volume-{volume_id}")


def other_host(host: str) -> str:
    return "bench@b" if "@a" in host else "bench@a"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(samples: list[float], q: float) -> float:
    """Nearest rank: the smallest sample with at least q of them at or below it."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def drive(clients: int, make_client, call, work: list[list]) -> dict:
    """`clients` threads, each with its own client, started together at a barrier; each
    calls `call(client, item)` (True when the answer was the expected one) for the items
    of its list, back to back. Returns the latencies (s), the errors and the wall time."""
    barrier = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            client = make_client(index)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
            barrier.wait()
            return
        barrier.wait()
        mine = latencies[index]
        for item in work[index]:
            start = time.perf_counter()
            try:
                ok = call(client, item)
            except Exception as exc:  # noqa: BLE001 - an error, counted
                ok = False
                failures.append(exc)
            mine.append(time.perf_counter() - start)
            if not ok:
                errors[index] += 1

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    out = {"latencies": [x for per in latencies for x in per], "errors": sum(errors),
           "wall": wall}
    if failures:
        out["failure"] = "; ".join(sorted({repr(f) for f in failures}))[:2000]
    return out


# -- the embedded side: a worker process, driven line by line --------------------------
def embedded_worker(conf_path: str) -> None:
    """A MigrationService started as `serve` starts it; commands on stdin, JSON on stdout."""
    import logging as std_logging

    from oslo_config import cfg
    from oslo_log import log as logging

    from volmigrate.cli.main import _setup_logging  # the CLI's own logging, as `serve` has
    from volmigrate.engine import MigrationService

    answer = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # nothing else may write on the answer channel
    std_logging.raiseExceptions = False
    conf = cfg.ConfigOpts()
    logging.register_options(conf)
    conf(["--config-file", conf_path], project="volmigrate")
    svc = MigrationService(conf)
    svc.connect()
    _setup_logging(conf)
    svc.start(recover=True)
    folder = os.path.dirname(conf_path)
    answer.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        command = json.loads(line)
        what = command["do"]
        if what == "create":
            volumes = []
            for index in range(command["count"]):
                volume = svc.create_volume(GiB, None, name=f"{command['prefix']}{index}",
                                           project_id=PROJECT, user_id="admin")
                if command.get("data"):
                    fill_head(data_path(folder, volume["host"], volume["id"]))
                volumes.append({"id": volume["id"], "host": volume["host"]})
            result = {"volumes": volumes}
        elif what == "show":
            result = drive(len(command["work"]), lambda i: None,
                           lambda _, vid: svc.get_volume(vid)["id"] == vid, command["work"])
        elif what == "migrate":
            def migrate(_, volume: dict) -> bool:
                response = svc.migrate_volume(volume["id"], other_host(volume["host"]))
                if not response.accepted:
                    raise RuntimeError(f"migrate rejected: {response.message}")
                return True
            result = drive(len(command["work"]), lambda i: None, migrate, command["work"])
        elif what == "list":
            start = time.perf_counter()
            count = len(svc.list_volumes(None, project_id=PROJECT))
            result = {"seconds": time.perf_counter() - start, "count": count}
        elif what == "exit":
            answer.write(json.dumps({"bye": True}) + "\n")
            answer.flush()
            os._exit(0)  # the held copies' threads are never joined
        else:
            result = {"error": f"unknown command {what}"}
        answer.write(json.dumps(result) + "\n")


class Embedded:
    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.conf = write_config(folder)
        self.log = open(os.path.join(folder, "worker.err"), "ab")
        self.process = subprocess.Popen(
            [sys.executable, HERE, "--embedded-worker", self.conf], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1)
        self.read()

    def read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the embedded worker died: {self.output()}")
        return json.loads(line)

    def output(self) -> str:
        with open(os.path.join(self.folder, "worker.err"), errors="replace") as f:
            return f.read()[-3000:]

    def ask(self, **command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.read()

    def pids(self) -> dict[str, int]:
        return {"engine": self.process.pid}  # its callers are threads of the same process

    def create(self, count: int, prefix: str, data: bool) -> list[dict]:
        return self.ask(do="create", count=count, prefix=prefix, data=data)["volumes"]

    def show(self, work: list[list[str]]) -> dict:
        return self.ask(do="show", work=work)

    def migrate(self, work: list[list[dict]]) -> dict:
        return self.ask(do="migrate", work=work)

    def list(self) -> tuple[float, int]:
        r = self.ask(do="list")
        return r["seconds"], r["count"]

    def stop(self) -> None:
        try:
            self.ask(do="exit")
        except Exception:  # noqa: BLE001
            pass
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


# -- the API side ------------------------------------------------------------------------
class Api:
    """`volmigrate serve` on loopback, two local backends, noauth; this process its client."""

    def __init__(self, folder: str) -> None:
        import logging as std_logging

        import requests

        # Under benchmarks/run.py the root logger takes DEBUG: urllib3's line per request
        # would be this client's cost, not the server's.
        std_logging.getLogger("urllib3").setLevel(std_logging.WARNING)
        self.requests = requests
        self.folder = folder
        self.port = free_port()
        self.conf = write_config(folder, self.port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.base = f"{self.url}/v3/{PROJECT}"
        self.headers = {"X-Auth-Token": TOKEN, "Content-Type": "application/json",
                        "Accept": "application/json"}
        self.process: subprocess.Popen | None = None
        self.session = requests.Session()
        from urllib3.connection import HTTPConnection
        from urllib3.connectionpool import HTTPConnectionPool

        connects: list[int] = []  # one item per connection opened (append is atomic)

        class Counted(HTTPConnection):
            def connect(self) -> None:
                connects.append(1)
                super().connect()

        class CountedPool(HTTPConnectionPool):
            ConnectionCls = Counted

        self._connects, self._counting_pool = connects, CountedPool

    def start(self) -> "Api":
        log = open(os.path.join(self.folder, "serve.out"), "ab")
        command = [os.path.join(os.path.dirname(sys.executable), "volmigrate"),
                   "--config-file", self.conf, "serve"]
        profile = os.environ.get("VOLMIGRATE_BENCH_PROFILE")
        if profile:  # cProfile around every request of the server (see profiled_serve)
            command = [sys.executable, HERE, "--profiled-serve", profile, self.conf]
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"volmigrate serve exited {self.process.returncode}: "
                                   f"{self.output()}")
            try:
                if self.requests.get(self.url + "/", timeout=5).status_code == 300:
                    return self
            except self.requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"volmigrate serve did not answer in 120 s: {self.output()}")

    def output(self) -> str:
        with open(os.path.join(self.folder, "serve.out"), errors="replace") as f:
            return f.read()[-3000:]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def pids(self) -> dict[str, int]:
        return {"server": self.process.pid, "client": os.getpid()}

    def create(self, count: int, prefix: str, data: bool) -> list[dict]:
        volumes = []
        for index in range(count):
            r = self.session.post(f"{self.base}/volumes", headers=self.headers, timeout=PATIENCE,
                                  json={"volume": {"name": f"{prefix}{index}", "size": 1}})
            if r.status_code != 202:
                raise RuntimeError(f"create: {r.status_code} {r.text}")
            vid = r.json()["volume"]["id"]
            r = self.session.get(f"{self.base}/volumes/{vid}", headers=self.headers,
                                 timeout=PATIENCE)
            host = r.json()["volume"]["os-vol-host-attr:host"]
            if data:
                fill_head(data_path(self.folder, host, vid))
            volumes.append({"id": vid, "host": host})
        return volumes

    def client(self, _index: int):
        """A session of its own, its connection opened by an untimed request."""
        session = self.requests.Session()
        session.headers.update(self.headers)
        # Its connections counted as they are opened: urllib3 opens a closed one again
        # in the same connection object, which its pool's num_connections does not count.
        session.get_adapter(self.url).poolmanager.pool_classes_by_scheme = {
            "http": self._counting_pool}
        if session.get(self.url + "/", timeout=PATIENCE).status_code != 300:
            raise RuntimeError("version discovery failed")
        with self._lock:
            self._sessions.append(session)
        return session

    def _drive(self, work: list[list], call) -> dict:
        """drive(), and how many connections the clients had to open again while timed
        (a keep-alive connection the server closed, or one it reset)."""
        self._sessions: list = []
        self._lock = threading.Lock()
        self._connects.clear()
        result = drive(len(work), self.client, call, work)
        result["reconnects"] = len(self._connects) - len(self._sessions)
        for session in self._sessions:
            session.close()
        return result

    def show(self, work: list[list[str]]) -> dict:
        def call(session, vid: str) -> bool:
            r = session.get(f"{self.base}/volumes/{vid}", timeout=PATIENCE)
            return r.status_code == 200 and r.json()["volume"]["id"] == vid
        return self._drive(work, call)

    def migrate(self, work: list[list[dict]]) -> dict:
        def call(session, volume: dict) -> bool:
            r = session.post(f"{self.base}/volumes/{volume['id']}/action", timeout=PATIENCE,
                             data=json.dumps({"os-migrate_volume": {
                                 "host": other_host(volume["host"])}}))
            if r.status_code != 202:
                raise RuntimeError(f"migrate answered {r.status_code}: {r.text[:300]}")
            return True
        return self._drive(work, call)

    def list(self) -> tuple[float, int]:
        start = time.perf_counter()
        r = self.session.get(f"{self.base}/volumes/detail", headers=self.headers,
                             timeout=PATIENCE)
        seconds = time.perf_counter() - start
        if r.status_code != 200:
            raise RuntimeError(f"list: {r.status_code} {r.text[:300]}")
        return seconds, len(r.json()["volumes"])


def populate(conf_path: str, count: int) -> None:
    """`count` volumes of the project, created through the engine before the server starts."""
    code = ("import sys, warnings\n"
            "warnings.filterwarnings('ignore', message=r'\\s*Eventlet is deprecated')\n"
            "from oslo_config import cfg\n"
            "from volmigrate.engine import MigrationService\n"
            "conf = cfg.ConfigOpts(); conf(['--config-file', sys.argv[1]])\n"
            "svc = MigrationService(conf); svc.start(recover=False)\n"
            "for i in range(int(sys.argv[2])):\n"
            f"    svc.create_volume({GiB}, 'bench@a' if i % 2 else 'bench@b', "
            f"name=f'list{{i}}', project_id='{PROJECT}', user_id='admin')\n"
            "svc.stop()\n")
    subprocess.run([sys.executable, "-c", code, conf_path, str(count)], check=True)


# -- the benchmark --------------------------------------------------------------------------
def summary(samples: list[float]) -> dict:
    return {"p50": percentile(samples, 0.50), "p99": percentile(samples, 0.99),
            "n": len(samples)}


def measure(work: str, rounds: int = 7, quick: bool = False, clients: int = CLIENTS,
            log=sys.stderr) -> dict:
    """Both sides, strict turns; returns every figure (seconds)."""
    # Calls per client per round: (clients, show requests, migrate requests). The
    # single client measures what one call costs with nothing queued beside it.
    loads = {"c32": (clients, 10 if quick else 40, 2 if quick else 4),
             "c1": (1, 40 if quick else 100, 5 if quick else 10)}
    list_rounds = max(3, rounds)

    def say(text: str) -> None:
        print(text, file=log, flush=True)

    api_dir, emb_dir = os.path.join(work, "api"), os.path.join(work, "embedded")
    api = Api(api_dir)
    populate(api.conf, LIST_VOLUMES)
    api.start()
    embedded = Embedded(emb_dir)
    sides = {"api": api, "embedded": embedded}
    out = {"rounds": rounds, "clients": clients, "loads": loads}
    try:
        # -- list with 1,000 volumes, one request at a time ----------------------------
        embedded.create(LIST_VOLUMES, "list", data=False)
        lists = {"api": [], "embedded": []}
        counts = set()
        for side in sides.values():
            side.list()  # not counted: the first reads the database from the disk
        for _ in range(list_rounds):
            for name, side in sides.items():
                seconds, count = side.list()
                lists[name].append(seconds)
                counts.add(count)
        out["list"] = {name: statistics.median(t) for name, t in lists.items()}
        out["list_counts"] = sorted(counts)
        out["list_rounds"] = lists
        say(f"  list of {LIST_VOLUMES}: " + ", ".join(
            f"{name} {[round(t * 1000, 1) for t in times]} ms" for name, times in lists.items()))

        # -- show and migrate ------------------------------------------------------------
        shown = {name: side.create(clients, "show", data=True) for name, side in sides.items()}
        keys = [f"{name}_{what}_{load}" for load in loads for what in ("show", "migrate")
                for name in sides]
        samples = {k: [] for k in keys}
        errors = dict.fromkeys(keys, 0)
        reconnects = dict.fromkeys(keys, 0)
        spent: dict[str, float] = {}  # CPU seconds of each process, per kind of call
        rates = {k: [] for k in keys}
        per_round = {k: [] for k in keys}
        failures = []
        # Warm-up, not counted: a few of each call on each side (the first migrate of a
        # process builds its first flow, the first request fills Flask's caches).
        for name, side in sides.items():
            side.show([[v["id"]] * 3 for v in shown[name]])
            side.migrate([[v] for v in side.create(2, "warm", data=True)])
        for index in range(rounds):
            fresh = {name: side.create(sum(n * m for n, _, m in loads.values()), f"r{index}-",
                                       data=True) for name, side in sides.items()}
            for load, (n, shows, migrates) in loads.items():
                for what in ("show", "migrate"):
                    for name, side in sides.items():
                        cpu = {pid: cpu_seconds(pid) for pid in side.pids().values()}
                        if what == "show":
                            r = side.show([[v["id"]] * shows for v in shown[name][:n]])
                        else:
                            vols, fresh[name] = fresh[name][:n * migrates], \
                                fresh[name][n * migrates:]
                            r = side.migrate([vols[i * migrates:(i + 1) * migrates]
                                              for i in range(n)])
                        key = f"{name}_{what}_{load}"
                        if not r["latencies"]:
                            raise RuntimeError(f"{key}: no call made: {r.get('failure')}")
                        for role, pid in side.pids().items():
                            spent[f"{key}_{role}"] = spent.get(f"{key}_{role}", 0.0) + \
                                cpu_seconds(pid) - cpu[pid]
                        samples[key] += r["latencies"]
                        errors[key] += r["errors"]
                        reconnects[key] += r.get("reconnects", 0)
                        rates[key].append(len(r["latencies"]) / r["wall"])
                        per_round[key].append((percentile(r["latencies"], 0.5),
                                               percentile(r["latencies"], 0.99)))
                        if "failure" in r:
                            failures.append(f"{key}: {r['failure']}")
                            say(f"  {key} round {index + 1}: {r['errors']} errors: "
                                f"{r['failure']}")
            say(f"  round {index + 1} p50/p99 ms: " + ", ".join(
                f"{k} {per_round[k][-1][0] * 1000:.1f}/{per_round[k][-1][1] * 1000:.1f}"
                for k in keys))
        out.update({k: summary(v) for k, v in samples.items()})
        calls = {k: len(v) for k, v in samples.items()}
        out["cpu_per_call"] = {k: v / calls[k.rsplit("_", 1)[0]] for k, v in spent.items()}
        out.update(errors=errors, reconnects=reconnects, per_round=per_round,
                   throughput={k: statistics.median(v) for k, v in rates.items()},
                   failures=failures[:5])
    finally:
        embedded.stop()
        api.stop()
    return out


def rows(result: dict) -> list[dict]:
    """The rows of benchmarks/run.py (name, ours, baseline, unit, ratio, target, passed, note)."""
    ms = 1000.0
    errors, tput, again = result["errors"], result["throughput"], result["reconnects"]
    clients = result["clients"]
    per_call = result["cpu_per_call"]

    def cpu(what: str, load: str) -> str:
        server = per_call[f"api_{what}_{load}_server"]
        client = per_call[f"api_{what}_{load}_client"]
        engine = per_call[f"embedded_{what}_{load}_engine"]
        return (f"CPU per call: server {server * ms:.1f} + client {client * ms:.1f} ms / "
                f"embedded {engine * ms:.1f} ms")

    out = []
    for what, call in (("show", "GET volume / get_volume"),
                       ("migrate", "accepted migrate / migrate_volume")):
        k_api, k_emb = f"api_{what}_c32", f"embedded_{what}_c32"
        a, e = result[k_api], result[k_emb]
        err_a, err_e = errors[k_api], errors[k_emb]
        added = (a["p50"] - e["p50"]) * ms
        note = (f"adds {added:.1f} ms; p99 {a['p99'] * ms:.1f} / {e['p99'] * ms:.1f} ms; "
                f"errors {err_a} / {err_e}; {a['n']} calls a side; throughput "
                f"{tput[k_api]:.0f} / {tput[k_emb]:.0f} calls/s; {cpu(what, 'c32')}; "
                f"connections the clients opened again {again[k_api]}")
        out.append(dict(name=f"API {what}, {clients} clients: {call}, p50 (ms)",
                        ours=a["p50"] * ms, baseline=e["p50"] * ms, unit="ms",
                        ratio=a["p50"] / e["p50"], target="adds <= 5 ms, no errors",
                        passed=added <= 5 and err_a == 0 and err_e == 0, note=note))
        if what == "show":
            out.append(dict(name=f"API show, {clients} clients: p99 (ms)",
                            ours=a["p99"] * ms, baseline=e["p99"] * ms, unit="ms",
                            ratio=a["p99"] / e["p99"], target="(no target)", passed=None,
                            note="baseline: the embedded call's p99"))
        else:
            out.append(dict(name=f"API migrate, {clients} clients: accepted (202), p99 (ms)",
                            ours=a["p99"] * ms, baseline=e["p99"] * ms, unit="ms",
                            ratio=a["p99"] / e["p99"], target="<= 50 ms, no errors",
                            passed=a["p99"] * ms <= 50 and err_a == 0,
                            note=f"baseline: the embedded call's p99; non-202 answers {err_a}"))
    for what, call in (("show", "GET volume / get_volume"),
                       ("migrate", "accepted migrate / migrate_volume")):
        k_api, k_emb = f"api_{what}_c1", f"embedded_{what}_c1"
        a, e = result[k_api], result[k_emb]
        out.append(dict(name=f"API {what}, 1 client: {call}, p50 (ms)",
                        ours=a["p50"] * ms, baseline=e["p50"] * ms, unit="ms",
                        ratio=a["p50"] / e["p50"], target="(what one call costs)",
                        passed=None,
                        note=f"adds {(a['p50'] - e['p50']) * ms:.1f} ms; p99 "
                             f"{a['p99'] * ms:.1f} / {e['p99'] * ms:.1f} ms; errors "
                             f"{errors[k_api]} / {errors[k_emb]}; {a['n']} calls a side; "
                             f"{cpu(what, 'c1')}"))
    la, le = result["list"]["api"], result["list"]["embedded"]
    out.append(dict(name=f"API GET /volumes/detail, {LIST_VOLUMES} volumes / list_volumes (s)",
                    ours=la, baseline=le, unit="s", ratio=la / le, target="(its cost)",
                    passed=None, note=f"median of {len(result['list_rounds']['api'])}; "
                                      f"volumes listed {result['list_counts']}"))
    return out


# -- profiling (VOLMIGRATE_BENCH_PROFILE=<file>): cProfile around every request ------------
def profiled_serve(output: str, conf_path: str) -> None:
    """`volmigrate serve` whose WSGI pipeline is profiled per request (every request thread
    has its own profile; their sum is written to `output` when the server stops)."""
    import cProfile
    import pstats

    from volmigrate.api import server
    from volmigrate.cli import main as cli_main

    profiles: list[cProfile.Profile] = []
    local = threading.local()
    lock = threading.Lock()
    build = server.build_pipeline

    def build_profiled(service):
        app = build(service)

        def profiled(environ, start_response):
            profile = getattr(local, "profile", None)
            if profile is None:
                profile = local.profile = cProfile.Profile()
                with lock:
                    profiles.append(profile)
            profile.enable()
            try:
                return list(app(environ, start_response))
            finally:
                profile.disable()
        return profiled

    stop = server.stop

    def stop_and_dump(service, srv, say):
        stats = None
        with lock:
            for profile in profiles:
                if stats is None:
                    stats = pstats.Stats(profile)
                else:
                    stats.add(profile)
        if stats is not None:
            stats.dump_stats(output)
        stop(service, srv, say)

    server.build_pipeline = build_profiled
    server.stop = stop_and_dump
    sys.exit(cli_main.main(["--config-file", conf_path, "serve"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="at least 3")
    parser.add_argument("--quick", action="store_true", help="fewer calls per round")
    parser.add_argument("--output", help="write every figure (and the rows) here as JSON")
    parser.add_argument("--embedded-worker", metavar="CONF", help=argparse.SUPPRESS)
    parser.add_argument("--profiled-serve", nargs=2, metavar=("OUT", "CONF"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.embedded_worker:
        return embedded_worker(args.embedded_worker)
    if args.profiled_serve:
        return profiled_serve(*args.profiled_serve)
    with tempfile.TemporaryDirectory(prefix="volmigrate-bench-", dir=os.getcwd()) as work:
        result = measure(work, max(3, args.rounds), args.quick)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump({"measured": result, "rows": rows(result)}, f, indent=1)
    for row in rows(result):
        verdict = {True: "yes", False: "NO", None: "-"}[row["passed"]]
        print(f"{row['name']:<72} {row['ours']:>9.3f} {row['baseline']:>9.3f} "
              f"{row['ratio']:>6.2f}  {row['target']:<26} {verdict}  {row['note']}")


if __name__ == "__main__":
    main()
