#!/usr/bin/env python3
"""A throwaway single-node Ceph cluster on loopback, for development, tests and the demo.

Library and command line. From the distribution's packages (Debian 12:
``ceph-mon ceph-osd ceph-mgr ceph-common``, Ceph 16) it starts, in a
scratch directory, one monitor, one OSD and one manager, with cephx, and stops
exactly the processes it started (their pids are kept in the scratch
directory). The manager is there because, measured here, without it the
cluster reports no capacity (``ceph df`` is all zeros, so a driver's pools
show 0 GiB free) and never enforces a pool quota; it costs about 5 s at start.

- ``--store memstore`` (default): data in the OSD's memory. Ready in about
  10 s here, most of it the manager's first report. Lost on SIGKILL of the OSD; kept across a SIGTERM restart, because
  ``osd_fast_shutdown = false`` makes the OSD save it at shutdown.
- ``--store bluestore``: data on a sparse file in the scratch directory, for
  data that must survive a killed OSD (measured: intact after kill -9 and a
  restart of the OSD). Ready in about 30 s.

Settings that matter, measured here: ``paxos_propose_interval = 0.05`` cuts a
pool's creation from about 5 s to under 1 s; one replica
(``osd_pool_default_size = 1``) because there is one OSD.

    python3 tools/ceph_cluster.py SCRATCH start [--store memstore|bluestore]
    python3 tools/ceph_cluster.py SCRATCH stop
    python3 tools/ceph_cluster.py SCRATCH stop-osd | start-osd | kill-osd
    python3 tools/ceph_cluster.py SCRATCH status

``start`` prints the ceph.conf and keyring paths. Only the standard library is
used; every command is an argv list.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

PACKAGES = ["ceph-mon", "ceph-osd", "ceph-mgr", "ceph-common", "python3-rados",
            "python3-rbd"]
BINARIES = ["ceph-mon", "ceph-osd", "ceph-mgr", "ceph-authtool", "monmaptool", "ceph", "rbd"]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

CONF = """\
[global]
fsid = {fsid}
mon_host = v2:127.0.0.1:{mon_port}
public_network = 127.0.0.1/32
ms_bind_msgr1 = false
ms_bind_ipv4 = true
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
keyring = {dir}/client.admin.keyring
run_dir = {dir}/run
admin_socket = {dir}/run/$name.asok
log_file = {dir}/log/$name.log
pid_file =
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
paxos_propose_interval = 0.05
# A killed client's exclusive lock is broken after this (30 s by default).
osd_client_watch_timeout = 5
mon_osd_full_ratio = 0.97
mon_osd_backfillfull_ratio = 0.95
mon_osd_nearfull_ratio = 0.93
auth_allow_insecure_global_id_reclaim = false
mon_data_avail_warn = 1

[client]
# Clients (the tests, volmigrate, rbd) are many at once: no admin socket, and
# their log in the scratch directory, never the caller's terminal.
admin_socket =
log_file = {dir}/log/client.log

[mon]
mon_data = {dir}/mon.$id
keyring = {dir}/mon.$id/keyring
mon_cluster_log_file = {dir}/log/cluster.log

[mgr]
mgr_data = {dir}/mgr.$id
keyring = {dir}/mgr.$id/keyring
mgr_stats_period = 1
mon_pg_warn_min_per_osd = 0

[osd]
osd_data = {dir}/osd.$id
keyring = {dir}/osd.$id/keyring
osd_objectstore = {store}
osd_fast_shutdown = false
osd_max_object_name_len = 256
osd_max_object_namespace_len = 64
memstore_device_bytes = {memstore_bytes}
bluestore_block_path = {dir}/osd.$id.block
bluestore_block_size = {bluestore_bytes}
bluestore_block_create = true
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1
"""


class CephClusterError(RuntimeError):
    """The cluster could not be set up, started or stopped."""


def missing_packages() -> list[str]:
    """Packages whose programs are not installed (empty when Ceph can run here)."""
    if all(shutil.which(b) for b in BINARIES):
        return []
    return PACKAGES


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(argv: list[str], **kwargs) -> str:
    try:
        result = subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)
    except subprocess.CalledProcessError as exc:
        raise CephClusterError(f"{' '.join(argv)} failed ({exc.returncode}): "
                               f"{(exc.stderr or exc.stdout).strip()}") from None
    except subprocess.TimeoutExpired:
        raise CephClusterError(f"{' '.join(argv)} did not answer in "
                               f"{kwargs.get('timeout')} s") from None
    return result.stdout


class CephCluster:
    """One monitor and one OSD in ``directory``."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.dir = Path(directory).resolve()
        self.conf = self.dir / "ceph.conf"
        self.keyring = self.dir / "client.admin.keyring"
        self.state_file = self.dir / "cluster.json"

    # -- state -----------------------------------------------------------------
    def _state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}

    def _save(self, state: dict) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.state_file)

    @property
    def fsid(self) -> str:
        return self._state()["fsid"]

    @property
    def mon_port(self) -> int:
        return self._state()["mon_port"]

    def ceph(self, *args: str, timeout: float = 30.0) -> str:
        """Run the ``ceph`` command against this cluster; its stdout."""
        return _run(["ceph", "--conf", str(self.conf), "--connect-timeout", "10", *args],
                    timeout=timeout)

    def rbd(self, *args: str, timeout: float = 600.0) -> str:
        return _run(["rbd", "--conf", str(self.conf), *args], timeout=timeout)

    # -- start -----------------------------------------------------------------
    def start(self, store: str = "memstore", memstore_gib: int = 12,
              bluestore_gib: int = 20) -> "CephCluster":
        """Create the cluster (first time) and start its daemons; idempotent."""
        missing = missing_packages()
        if missing:
            raise CephClusterError(f"Ceph is not installed: apt-get install {' '.join(missing)}")
        if not self._state():
            self._create(store, memstore_gib, bluestore_gib)
        try:
            self._start_mon()
            self._start_osd()
            self._start_mgr()
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self, store: str, memstore_gib: int, bluestore_gib: int) -> None:
        if store not in ("memstore", "bluestore"):
            raise CephClusterError(f"unknown store {store!r}: memstore or bluestore")
        self.dir.mkdir(parents=True, exist_ok=True)
        for sub in ("run", "log"):
            (self.dir / sub).mkdir(exist_ok=True)
        fsid, osd_uuid, port = str(uuid.uuid4()), str(uuid.uuid4()), _free_port()
        self.conf.write_text(CONF.format(
            fsid=fsid, mon_port=port, dir=self.dir, store=store,
            memstore_bytes=memstore_gib << 30, bluestore_bytes=bluestore_gib << 30))
        mon_keyring = self.dir / "mon.keyring"
        _run(["ceph-authtool", "--create-keyring", str(mon_keyring), "--gen-key", "-n", "mon.",
              "--cap", "mon", "allow *"])
        _run(["ceph-authtool", "--create-keyring", str(self.keyring), "--gen-key",
              "-n", "client.admin", "--cap", "mon", "allow *", "--cap", "osd", "allow *",
              "--cap", "mgr", "allow *"])
        _run(["ceph-authtool", str(mon_keyring), "--import-keyring", str(self.keyring)])
        monmap = self.dir / "monmap"
        _run(["monmaptool", "--create", "--fsid", fsid, "--addv", "a",
              f"[v2:127.0.0.1:{port}]", str(monmap)])
        _run(["ceph-mon", "--conf", str(self.conf), "--mkfs", "-i", "a", "--monmap",
              str(monmap), "--keyring", str(mon_keyring)])
        self._save({"fsid": fsid, "mon_port": port, "osd_uuid": osd_uuid, "store": store,
                    "pids": {}, "osd_created": False})

    def _spawn(self, name: str, argv: list[str]) -> None:
        state = self._state()
        pid = state["pids"].get(name)
        if pid and _alive(pid):
            return
        log = open(self.dir / "log" / f"{name}.out", "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
        log.close()
        state["pids"][name] = proc.pid
        self._save(state)

    def _start_mon(self) -> None:
        self._spawn("mon.a", ["ceph-mon", "-f", "--conf", str(self.conf), "-i", "a"])
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self.ceph("mon", "stat", timeout=15)
                return
            except CephClusterError:
                if time.monotonic() > deadline or not _alive(self._state()["pids"]["mon.a"]):
                    raise CephClusterError(f"the monitor did not start; see "
                                           f"{self.dir / 'log'}") from None
                time.sleep(0.2)

    def _start_osd(self) -> None:
        state = self._state()
        if not state["osd_created"]:
            osd_id = self.ceph("osd", "new", state["osd_uuid"]).strip()
            if osd_id != "0":
                raise CephClusterError(f"expected osd.0, the monitor gave osd.{osd_id}")
            (self.dir / "osd.0").mkdir(exist_ok=True)
            _run(["ceph-osd", "--conf", str(self.conf), "-i", "0", "--mkfs", "--mkkey", "--no-mon-config",
                  "--osd-uuid", state["osd_uuid"]], timeout=120)
            self.ceph("auth", "add", "osd.0", "osd", "allow *", "mon", "allow profile osd",
                      "-i", str(self.dir / "osd.0" / "keyring"))
            state = self._state()
            state["osd_created"] = True
            self._save(state)
        self._spawn("osd.0", ["ceph-osd", "-f", "--conf", str(self.conf), "-i", "0"])

    def _start_mgr(self) -> None:
        keyring = self.dir / "mgr.x" / "keyring"
        if not keyring.exists():
            keyring.parent.mkdir(exist_ok=True)
            keyring.write_text(self.ceph("auth", "get-or-create", "mgr.x", "mon",
                                         "allow profile mgr", "osd", "allow *"))
        self._spawn("mgr.x", ["ceph-mgr", "-f", "--conf", str(self.conf), "-i", "x"])

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Until the OSD is up and in, and the manager reports the capacity."""
        deadline = time.monotonic() + timeout
        while True:
            dump = json.loads(self.ceph("osd", "dump", "--format", "json"))
            osds = dump.get("osds", [])
            if osds and osds[0].get("up") and osds[0].get("in"):
                df = json.loads(self.ceph("df", "--format", "json"))
                if df["stats"]["total_bytes"] > 0:
                    return
            for name in ("osd.0", "mgr.x"):
                pid = self._state()["pids"].get(name)
                if not (pid and _alive(pid)):
                    raise CephClusterError(f"{name} ended at start; see {self.dir / 'log'}")
            if time.monotonic() > deadline:
                raise CephClusterError(f"the cluster was not ready in {timeout:.0f} s; see "
                                       f"{self.dir / 'log'}")
            time.sleep(0.2)

    # -- pools and users -----------------------------------------------------
    def create_pool(self, name: str, pg_num: int = 8) -> None:
        self.ceph("osd", "pool", "create", name, str(pg_num))
        self.ceph("osd", "pool", "application", "enable", name, "rbd")

    def delete_pool(self, name: str) -> None:
        self.ceph("osd", "pool", "delete", name, name, "--yes-i-really-really-mean-it")

    def create_user(self, name: str, pools: list[str]) -> Path:
        """A cephx user with rbd rights on `pools`; the path of its keyring file."""
        caps = ",".join(f"profile rbd pool={p}" for p in pools)
        keyring = self.dir / f"client.{name}.keyring"
        keyring.write_text(self.ceph("auth", "get-or-create", f"client.{name}",
                                     "mon", "profile rbd", "osd", caps))
        return keyring

    # -- stop ------------------------------------------------------------------
    def stop_osd(self, sig: int = signal.SIGTERM) -> None:
        self._stop("osd.0", sig)

    def start_osd(self) -> None:
        self._start_osd()
        self.wait_healthy()

    def stop(self) -> None:
        """Stop the daemons this directory started (never any other ceph process)."""
        if not self.state_file.exists():
            return
        self._stop("mgr.x", signal.SIGTERM)
        self._stop("osd.0", signal.SIGTERM)
        self._stop("mon.a", signal.SIGTERM)

    def _stop(self, name: str, sig: int) -> None:
        state = self._state()
        pid = state.get("pids", {}).get(name)
        if not pid:
            return
        if _alive(pid) and _is_ours(pid, self.conf):
            os.kill(pid, sig)
            deadline = time.monotonic() + STOP_TIMEOUT
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                while _alive(pid):
                    time.sleep(0.05)
        state["pids"].pop(name, None)
        self._save(state)

    def destroy(self) -> None:
        """Stop it and remove the scratch directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie child of ours counts as ended, and is reaped)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (FileNotFoundError, IndexError):
        return False


def _is_ours(pid: int, conf: Path) -> bool:
    """The pid still runs a daemon of this cluster (pids get reused)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return str(conf).encode() in f.read().split(b"\0")
    except FileNotFoundError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scratch", help="directory of the cluster (created if missing)")
    parser.add_argument("action", choices=["start", "stop", "destroy", "status", "stop-osd",
                                           "kill-osd", "start-osd"])
    parser.add_argument("--store", choices=["memstore", "bluestore"], default="memstore")
    args = parser.parse_args(argv)
    cluster = CephCluster(args.scratch)
    try:
        if args.action == "start":
            started = time.monotonic()
            cluster.start(store=args.store)
            print(json.dumps({"conf": str(cluster.conf), "keyring": str(cluster.keyring),
                              "fsid": cluster.fsid,
                              "seconds": round(time.monotonic() - started, 1)}))
        elif args.action == "stop":
            cluster.stop()
        elif args.action == "destroy":
            cluster.destroy()
        elif args.action == "stop-osd":
            cluster.stop_osd()
        elif args.action == "kill-osd":
            cluster.stop_osd(signal.SIGKILL)
        elif args.action == "start-osd":
            cluster.start_osd()
        else:
            print(cluster.ceph("status"))
    except CephClusterError as exc:
        print(f"ceph_cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
