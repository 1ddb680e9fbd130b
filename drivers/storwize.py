"""The Storwize/SVC backend: vdisks of an IBM Storwize (or SVC) array, over SSH.

The driver speaks the array's command line (``svcinfo``/``svctask``) over SSH
with paramiko, as Cinder's Storwize driver does, keeping Cinder's option names.
A move to another pool of the same array is done by the array itself
(``migratevdisk``), online, with its progress read from ``lsmigrate``; that is
the driver-assisted migration of the spec.

Reaching a vdisk's data from this host (for host copies) needs a SAN attach
(iSCSI or FC, os-brick in Cinder), which this version does not implement: the
only connector is ``simulator``, which reads the data path that volmigrate's
Storwize simulator (``drivers/simulators/storwize.py``) reports. Everything
else is the array's real command set.

Commands are argument lists joined with ``shlex.join`` (never a string built
from unquoted input), run one per SSH ``exec`` channel over a small pool of
connections. Only a failure of the way to the array (SSH, socket, EOF) is
retried, on a fresh connection; a command the array answered with an error
is reported at once as :class:`StorwizeCommandError` with its CMMVC code.

paramiko and tenacity are imported when the driver first talks to the array:
the commands that only read the database load this module (to check the
options of a backend's section) and never connect.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import re
import shlex
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from oslo_config import cfg
from oslo_log import log as logging

from volmigrate.common.hosts import parse_host
from volmigrate.drivers import base
from volmigrate.drivers.exceptions import DriverConfigError, DriverError

if TYPE_CHECKING:
    import paramiko

LOG = logging.getLogger(__name__)

DELIM = "!"
NOT_FOUND_CODES = ("CMMVC5753E", "CMMVC5754E")
ALREADY_MAPPED = "CMMVC5878E"
NOT_MAPPED = "CMMVC5842E"
ALREADY_EXISTS = "CMMVC6035E"
ALREADY_IN_POOL = "CMMVC6096E"
_CODE_RE = re.compile(r"\bCMMVC\d{4}[EW]\b")

storwize_opts = [
    cfg.StrOpt("san_ip", help="Address of the array's management interface (SSH)."),
    cfg.PortOpt("san_ssh_port", default=22, min=1, help="SSH port of the array."),
    cfg.StrOpt("san_login", default="admin", help="User name on the array."),
    cfg.StrOpt("san_password", default="", secret=True, help="Password of san_login."),
    cfg.ListOpt("storwize_svc_volpool_name", default=[],
                help="The array's storage pools (mdisk groups) this backend uses; the "
                     "first is the default pool."),
    cfg.IntOpt("ssh_conn_timeout", default=30, min=1, max=3600,
               help="Seconds to wait for the array to connect or answer."),
    cfg.IntOpt("ssh_min_pool_conn", default=1, min=0, max=64,
               help="SSH connections to the array opened at setup and kept open."),
    cfg.IntOpt("ssh_max_pool_conn", default=5, min=1, max=64,
               help="SSH connections to the array kept open at most."),
    cfg.IntOpt("storwize_ssh_retries", default=3, min=1, max=100,
               help="Attempts of one command when the SSH connection fails (a command "
                    "the array answered with an error is never retried)."),
    cfg.StrOpt("storwize_connector", default="simulator", choices=[
        ("simulator", "the host copy reaches a vdisk through the data path volmigrate's "
                      "Storwize simulator reports; attaching a real array over iSCSI/FC "
                      "(os-brick) is not implemented")],
               help="How a host copy reaches a vdisk's data."),
    cfg.StrOpt("storwize_host_name",
               help="Host object the vdisks are mapped to during a host copy. "
                    "Default: volmigrate-<backend section name>."),
]


@functools.cache
def _ssh_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(transient, permanent): the errors that say nothing about a command, only
    about the way to the array, and among them those that trying again cannot cure."""
    import paramiko

    return ((paramiko.SSHException, OSError, EOFError),
            (paramiko.AuthenticationException, paramiko.BadHostKeyException))


class StorwizeCommandError(DriverError):
    """The array refused a command; `code` is its CMMVC message code."""

    def __init__(self, command: str, message: str) -> None:
        match = _CODE_RE.search(message)
        self.code = match.group(0) if match else None
        super().__init__(f"{command} failed: {message}")


class _SSHPool:
    """Open SSH connections to the array, reused between commands.

    The array's host key is checked against the user's known_hosts, and a
    host not listed there is accepted on first use (AutoAddPolicy): the
    simulator makes a new key for each data dir, and pinning keys is kept out
    of this version. A deployment against a real array should list the
    array's key in known_hosts; a key that then differs is refused.
    """

    def __init__(self, host: str, port: int, login: str, password: str, timeout: int,
                 size: int) -> None:
        self.host, self.port, self.login, self.password = host, port, login, password
        self.timeout = timeout
        self._idle: queue.LifoQueue[paramiko.SSHClient] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    def _connect(self) -> paramiko.SSHClient:
        import paramiko

        client = paramiko.SSHClient()
        client.load_system_host_keys()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(self.host, self.port, self.login, self.password,
                           timeout=self.timeout, banner_timeout=self.timeout,
                           auth_timeout=self.timeout, look_for_keys=False,
                           allow_agent=False)
        except BaseException:
            client.close()
            raise
        try:  # small commands and answers: no Nagle delay (~40 ms each otherwise)
            client.get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (AttributeError, OSError):
            pass
        return client

    def fill(self, count: int) -> None:
        """Open connections until `count` are idle (ssh_min_pool_conn)."""
        while self._idle.qsize() < count:
            self._idle.put(self._connect())

    @contextlib.contextmanager
    def client(self) -> Iterator[paramiko.SSHClient]:
        """A live connection; a broken one is closed instead of going back to the pool."""
        with self._slots:
            try:
                client = self._idle.get_nowait()
                transport = client.get_transport()
                if transport is None or not transport.is_active():
                    client.close()
                    client = self._connect()
            except queue.Empty:
                client = self._connect()
            try:
                yield client
            except BaseException as exc:
                client.close()
                if isinstance(exc, _ssh_errors()[0]):
                    self.close()  # the idle ones went the same way, most likely
                raise
            self._idle.put(client)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _rows(text: str) -> list[dict[str, str]]:
    """A list view: a header line, then one line per object."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0].split(DELIM)
    return [dict(zip(header, line.split(DELIM))) for line in lines[1:]]


def _detail(text: str) -> dict[str, str]:
    """A detail view: one ``key!value`` line per attribute."""
    result = {}
    for line in text.splitlines():
        key, sep, value = line.partition(DELIM)
        if sep and key not in result:
            result[key] = value
    return result


def _blocks(text: str) -> list[dict[str, str]]:
    """Several detail views separated by blank lines (lsmigrate)."""
    return [_detail(block) for block in re.split(r"\n\s*\n", text.strip()) if block.strip()]


class StorwizeDriver(base.VolumeDriver):
    """A backend of vdisks in the pools ``storwize_svc_volpool_name`` of one array."""

    vendor_name = "IBM"
    storage_protocol = "iSCSI"

    options = storwize_opts

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pool: _SSHPool | None = None

    # -- the array's command line ---------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.configuration.san_ip}:{self.configuration.san_ssh_port}"

    def _ssh(self) -> _SSHPool:
        if self._pool is None:
            conf = self.configuration
            self._pool = _SSHPool(conf.san_ip, conf.san_ssh_port, conf.san_login,
                                  conf.san_password, conf.ssh_conn_timeout,
                                  conf.ssh_max_pool_conn)
        return self._pool

    def _run_once(self, args: tuple[str, ...]) -> str:
        with self._ssh().client() as client:
            _, stdout, stderr = client.exec_command(
                shlex.join(args), timeout=self.configuration.ssh_conn_timeout)
            try:
                out = stdout.read().decode(errors="replace")
                err = stderr.read().decode(errors="replace")
                status = stdout.channel.recv_exit_status()
            finally:
                stdout.channel.close()
        if status != 0:
            raise StorwizeCommandError(args[1], err.strip() or f"exit status {status}")
        return out

    def _run(self, *args: str) -> str:
        """Run one CLI command; retry only when the way to the array failed.

        A command the array answered is never run again, even one that failed:
        the array has decided, and running e.g. mkvdisk twice is not harmless.
        """
        import paramiko
        import tenacity

        transient, permanent = _ssh_errors()
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.configuration.storwize_ssh_retries),
            wait=tenacity.wait_exponential(multiplier=0.25, max=2),
            retry=tenacity.retry_if_exception_type(transient)
            & tenacity.retry_if_not_exception_type(permanent),
            before_sleep=lambda state: LOG.warning(
                "SSH to the Storwize array at %s failed (%s); trying again", self.address,
                state.outcome.exception()),
            reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    return self._run_once(args)
        except paramiko.AuthenticationException as exc:
            raise DriverConfigError(f"the Storwize array at {self.address} refused the "
                                    f"login of {self.configuration.san_login}: {exc}") from exc
        except paramiko.BadHostKeyException as exc:
            raise DriverConfigError(f"the Storwize array at {self.address} shows another "
                                    f"SSH host key than known_hosts lists: {exc}") from exc
        except transient as exc:
            raise DriverError(f"cannot reach the Storwize array at {self.address}: "
                              f"{exc or type(exc).__name__}") from exc
        raise AssertionError("unreachable")

    # -- setup and stats ------------------------------------------------------
    def do_setup(self) -> None:
        """Check the array answers and has every configured pool."""
        conf = self.configuration
        if not conf.san_ip:
            raise DriverConfigError("san_ip is not set")
        if not conf.storwize_svc_volpool_name:
            raise DriverConfigError("storwize_svc_volpool_name names no pool")
        try:
            system = _detail(self._run("svcinfo", "lssystem", "-delim", DELIM))
            known = {row["name"] for row in _rows(
                self._run("svcinfo", "lsmdiskgrp", "-bytes", "-delim", DELIM))}
        except DriverError as exc:
            raise DriverConfigError(str(exc)) from exc
        missing = [p for p in conf.storwize_svc_volpool_name if p not in known]
        if missing:
            raise DriverConfigError(f"the Storwize array at {self.address} has no pool "
                                    f"{', '.join(missing)} (pools: {', '.join(sorted(known))})")
        transient, permanent = _ssh_errors()
        try:
            self._ssh().fill(min(conf.ssh_min_pool_conn, conf.ssh_max_pool_conn))
        except (*transient, *permanent) as exc:  # commands will connect when they need to
            LOG.warning("Backend %s: cannot open %d SSH connections to %s yet: %s",
                        self.backend_name, conf.ssh_min_pool_conn, self.address, exc)
        LOG.info("Backend %s: Storwize system %s (code level %s) at %s", self.backend_name,
                 system.get("name"), system.get("code_level"), self.address)

    def pools(self) -> list[str]:
        return list(self.configuration.storwize_svc_volpool_name)

    def get_volume_stats(self) -> dict:
        gib = 1024 ** 3
        pools = []
        for name in self.pools():
            info = _detail(self._run("svcinfo", "lsmdiskgrp", "-bytes", "-delim", DELIM, name))
            pools.append({"pool_name": name,
                          "total_capacity_gb": round(int(info["capacity"]) / gib, 2),
                          "free_capacity_gb": round(int(info["free_capacity"]) / gib, 2)})
        return {"volume_backend_name": self.backend_name, "migration_progress_report": True,
                "pools": pools}

    # -- vdisks ---------------------------------------------------------------
    @staticmethod
    def vdisk_name(volume: dict) -> str:
        return f"volume-{base.object_id(volume)}"

    def _pool_of(self, volume: dict) -> str:
        """The pool the volume's host names (node@backend#pool), else the default one."""
        return parse_host(volume["host"]).pool or self.default_pool

    def _vdisk(self, volume: dict) -> dict[str, str] | None:
        """lsvdisk's detail view of the volume's vdisk (capacity in bytes), None if none."""
        try:
            return _detail(self._run("svcinfo", "lsvdisk", "-bytes", "-delim", DELIM,
                                     self.vdisk_name(volume)))
        except StorwizeCommandError as exc:
            if exc.code in NOT_FOUND_CODES:
                return None
            raise

    def _check_made(self, volume: dict, vdisk: dict[str, str], pool: str) -> dict:
        """A vdisk of this name exists: ours if a crash interrupted us after mkvdisk."""
        name = self.vdisk_name(volume)
        if int(vdisk["capacity"]) != volume["size"] or vdisk["mdisk_grp_name"] != pool:
            raise DriverError(f"vdisk {name} already exists on the array, with "
                              f"{vdisk['capacity']} bytes in pool {vdisk['mdisk_grp_name']}")
        LOG.info("vdisk %s exists already in pool %s (made before a restart)", name, pool)
        return {"provider_location": f"{pool}/{name}"}

    def create_volume(self, volume: dict) -> dict:
        name, pool = self.vdisk_name(volume), self._pool_of(volume)
        existing = self._vdisk(volume)
        if existing is not None:
            return self._check_made(volume, existing, pool)
        try:
            self._run("svctask", "mkvdisk", "-name", name, "-mdiskgrp", pool, "-iogrp", "0",
                      "-size", str(volume["size"]), "-unit", "b")
        except StorwizeCommandError as exc:
            # A retry after a connection lost once the array had the command.
            existing = self._vdisk(volume) if exc.code == ALREADY_EXISTS else None
            if existing is None:
                raise
            return self._check_made(volume, existing, pool)
        LOG.info("Created vdisk %s (%d bytes) in pool %s", name, volume["size"], pool)
        return {"provider_location": f"{pool}/{name}"}

    def delete_volume(self, volume: dict) -> None:
        try:
            self._run("svctask", "rmvdisk", "-force", self.vdisk_name(volume))
        except StorwizeCommandError as exc:
            if exc.code not in NOT_FOUND_CODES:
                raise

    def volume_identity(self, volume: dict) -> dict:
        """The vdisk's id and UID on the array (a vdisk made again under the name
        differs) and its capacity; the pool is left out, the array may move it."""
        vdisk = self._vdisk(volume)
        if vdisk is None:
            raise DriverError(f"vdisk {self.vdisk_name(volume)} does not exist on the array")
        return {"vdisk_id": vdisk["id"], "vdisk_UID": vdisk.get("vdisk_UID"),
                "size": int(vdisk["capacity"])}

    # -- host copies ----------------------------------------------------------
    @property
    def host_name(self) -> str:
        return self.configuration.storwize_host_name or f"volmigrate-{self.backend_name}"

    def connect_volume(self, volume: dict, writable: bool) -> dict:
        """Map the vdisk to our host object, then reach it by the simulator's data path."""
        name = self.vdisk_name(volume)
        try:
            self._run("svctask", "mkvdiskhostmap", "-force", "-host", self.host_name, name)
        except StorwizeCommandError as exc:
            if exc.code in NOT_FOUND_CODES:
                raise DriverError(f"vdisk {name} does not exist on the array") from exc
            if exc.code != ALREADY_MAPPED:  # mapped by a run a crash interrupted
                raise
        vdisk = self._vdisk(volume)
        if vdisk is None:
            raise DriverError(f"vdisk {name} does not exist on the array")
        path = vdisk.get("sim_data_path")
        if not path:
            raise DriverError(f"the array at {self.address} gives no data path for vdisk "
                              f"{name}: storwize_connector = simulator works only with "
                              f"volmigrate's Storwize simulator")
        return {"access": base.ACCESS_PATH, "path": path, "vdisk": name}

    def connection_valid(self, volume: dict, connection: dict) -> bool:
        if not os.path.exists(connection["path"]):
            return False
        vdisk = self._vdisk(volume)
        return vdisk is not None and vdisk.get("sim_data_path") == connection["path"]

    def disconnect_volume(self, volume: dict, connection: dict) -> None:
        name = connection.get("vdisk") or self.vdisk_name(volume)
        try:
            self._run("svctask", "rmvdiskhostmap", "-host", self.host_name, name)
        except StorwizeCommandError as exc:
            if exc.code not in (*NOT_FOUND_CODES, NOT_MAPPED):
                raise

    # -- the array's own moves ------------------------------------------------
    def can_migrate_within_backend(self, volume: dict, dest_pool: str) -> bool:
        return dest_pool in self.pools() and dest_pool != self._pool_of(volume)

    def _migration_of(self, vdisk: dict[str, str]) -> dict[str, str] | None:
        """lsmigrate's block for this vdisk, None when the array is not moving it."""
        for block in _blocks(self._run("svcinfo", "lsmigrate", "-delim", DELIM)):
            if block.get("migrate_source_vdisk_index") == vdisk["id"]:
                return block
        return None

    def _pool_id(self, pool: str) -> str:
        return _detail(self._run("svcinfo", "lsmdiskgrp", "-delim", DELIM, pool))["id"]

    def migrate_within_backend(self, volume: dict, dest_pool: str) -> None:
        """Start migratevdisk unless the move is running or done (a resumed flow)."""
        name = self.vdisk_name(volume)
        vdisk = self._vdisk(volume)
        if vdisk is None:
            raise DriverError(f"vdisk {name} does not exist on the array")
        running = self._migration_of(vdisk)
        if running is not None:
            if running.get("migrate_target_mdisk_grp") != self._pool_id(dest_pool):
                raise DriverError(f"vdisk {name} is being moved by the array to another "
                                  f"pool (mdisk group id "
                                  f"{running.get('migrate_target_mdisk_grp')})")
            LOG.info("vdisk %s is already being moved by the array to %s; waiting for it",
                     name, dest_pool)
            return
        if vdisk["mdisk_grp_name"] == dest_pool:
            LOG.info("vdisk %s is in pool %s already", name, dest_pool)
            return
        try:
            self._run("svctask", "migratevdisk", "-mdiskgrp", dest_pool, "-vdisk", name)
        except StorwizeCommandError as exc:
            # The move ended between lsmigrate and now (or a lost answer was retried).
            if exc.code == ALREADY_IN_POOL and self.volume_pool(volume) == dest_pool:
                return
            raise
        LOG.info("The array is moving vdisk %s to pool %s", name, dest_pool)

    def get_migration_progress(self, volume: dict) -> tuple[int, int] | None:
        vdisk = self._vdisk(volume)
        if vdisk is None:
            return None
        block = self._migration_of(vdisk)
        if block is None:
            return None
        capacity = int(vdisk["capacity"])
        return capacity * int(block.get("progress", "0")) // 100, capacity

    def moved_within_backend(self, volume: dict, pool: str) -> dict:
        return {"provider_location": f"{pool}/{self.vdisk_name(volume)}"}

    def volume_pool(self, volume: dict, target: str | None = None) -> str:
        vdisk = self._vdisk(volume)
        if vdisk is None:
            raise DriverError(f"vdisk {self.vdisk_name(volume)} does not exist on the array")
        return vdisk["mdisk_grp_name"]
