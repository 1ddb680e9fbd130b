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
"""

from __future__ import annotations

import contextlib
import queue
import re
import shlex
import threading

import paramiko
import tenacity
from oslo_config import cfg
from oslo_log import log as logging

from volmigrate.drivers import base
from volmigrate.drivers.exceptions import DriverConfigError, DriverError

LOG = logging.getLogger(__name__)

DELIM = "!"
# Errors that say nothing about the command, only about the way to the array.
TRANSIENT = (paramiko.SSHException, OSError, EOFError)
NOT_FOUND_CODES = ("CMMVC5753E", "CMMVC5754E")
_CODE_RE = re.compile(r"\bCMMVC\d{4}[EW]\b")

storwize_opts = [
    cfg.StrOpt("san_ip", help="Address of the array's management interface (SSH)."),
    cfg.PortOpt("san_ssh_port", default=22, help="SSH port of the array."),
    cfg.StrOpt("san_login", default="admin", help="User name on the array."),
    cfg.StrOpt("san_password", default="", secret=True, help="Password of san_login."),
    cfg.ListOpt("storwize_svc_volpool_name", default=[],
                help="The array's storage pools (mdisk groups) this backend uses; the "
                     "first is the default pool."),
    cfg.IntOpt("ssh_conn_timeout", default=30, min=1,
               help="Seconds to wait for the array to connect or answer."),
    cfg.IntOpt("ssh_max_pool_conn", default=5, min=1,
               help="SSH connections to the array kept open at most."),
    cfg.IntOpt("storwize_ssh_retries", default=3, min=1,
               help="Attempts of one command when the SSH connection fails (a command "
                    "the array answered with an error is never retried)."),
    cfg.StrOpt("storwize_connector", default="simulator", choices=[
        ("simulator", "host copies read the data path volmigrate's Storwize simulator "
                      "reports; attaching a real array over iSCSI/FC is not implemented")],
               help="How a host copy reaches a vdisk's data."),
    cfg.StrOpt("storwize_host_name",
               help="Host object the vdisks are mapped to during a host copy. "
                    "Default: volmigrate-<backend section name>."),
]


class StorwizeCommandError(DriverError):
    """The array refused a command; `code` is its CMMVC message code."""

    def __init__(self, command: str, message: str) -> None:
        match = _CODE_RE.search(message)
        self.code = match.group(0) if match else None
        super().__init__(f"{command} failed: {message}")


class _SSHPool:
    """Open SSH connections to the array, reused between commands.

    The array's host key is accepted on first use (AutoAddPolicy), as for a
    simulator started with a fresh key; a deployment against a real array
    should pin it in the user's known_hosts, which paramiko also reads.
    """

    def __init__(self, host: str, port: int, login: str, password: str, timeout: int,
                 size: int) -> None:
        self.host, self.port, self.login, self.password = host, port, login, password
        self.timeout = timeout
        self._idle: queue.LifoQueue[paramiko.SSHClient] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.load_system_host_keys()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect(self.host, self.port, self.login, self.password,
                       timeout=self.timeout, banner_timeout=self.timeout,
                       auth_timeout=self.timeout, look_for_keys=False, allow_agent=False)
        return client

    @contextlib.contextmanager
    def client(self):
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
            except BaseException:
                client.close()
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

    def _run_once(self, command: str) -> str:
        with self._ssh().client() as client:
            _, stdout, stderr = client.exec_command(
                command, timeout=self.configuration.ssh_conn_timeout)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            status = stdout.channel.recv_exit_status()
        if status != 0:
            raise StorwizeCommandError(shlex.split(command)[1],
                                       err.strip() or f"exit status {status}")
        return out

    def _run(self, *args: str) -> str:
        """Run one CLI command; retry only when the way to the array failed."""
        command = shlex.join(args)
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.configuration.storwize_ssh_retries),
            wait=tenacity.wait_exponential(multiplier=0.25, max=2),
            retry=tenacity.retry_if_exception_type(TRANSIENT)
            & tenacity.retry_if_not_exception_type(paramiko.AuthenticationException),
            before_sleep=lambda state: LOG.warning(
                "SSH to the Storwize array at %s failed (%s); trying again", self.address,
                state.outcome.exception()),
            reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    return self._run_once(command)
        except paramiko.AuthenticationException as exc:
            raise DriverConfigError(f"the Storwize array at {self.address} refused the "
                                    f"login of {self.configuration.san_login}: {exc}") from exc
        except TRANSIENT as exc:
            raise DriverError(f"cannot reach the Storwize array at {self.address}: "
                              f"{exc or type(exc).__name__}") from exc
        raise AssertionError("unreachable")

    # -- setup and stats ------------------------------------------------------
    def do_setup(self) -> None:
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
        return volume["host"].partition("#")[2] or self.default_pool

    def _vdisk(self, volume: dict) -> dict[str, str] | None:
        try:
            return _detail(self._run("svcinfo", "lsvdisk", "-bytes", "-delim", DELIM,
                                     self.vdisk_name(volume)))
        except StorwizeCommandError as exc:
            if exc.code in NOT_FOUND_CODES:
                return None
            raise

    def create_volume(self, volume: dict) -> dict:
        name, pool = self.vdisk_name(volume), self._pool_of(volume)
        existing = self._vdisk(volume)
        if existing is not None:
            if int(existing["capacity"]) == volume["size"]:
                return {"provider_location": f"{pool}/{name}"}  # made before a crash
            raise DriverError(f"vdisk {name} already exists with another capacity")
        self._run("svctask", "mkvdisk", "-name", name, "-mdiskgrp", pool, "-iogrp", "0",
                  "-size", str(volume["size"]), "-unit", "b")
        return {"provider_location": f"{pool}/{name}"}

    def delete_volume(self, volume: dict) -> None:
        try:
            self._run("svctask", "rmvdisk", "-force", self.vdisk_name(volume))
        except StorwizeCommandError as exc:
            if exc.code not in NOT_FOUND_CODES:
                raise

    # -- host copies ----------------------------------------------------------
    @property
    def host_name(self) -> str:
        return self.configuration.storwize_host_name or f"volmigrate-{self.backend_name}"

    def _mapped(self, name: str) -> bool:
        rows = _rows(self._run("svcinfo", "lsvdiskhostmap", "-delim", DELIM, name))
        return any(row.get("host_name") == self.host_name for row in rows)

    def connect_volume(self, volume: dict, writable: bool) -> dict:
        name = self.vdisk_name(volume)
        vdisk = self._vdisk(volume)
        if vdisk is None:
            raise DriverError(f"vdisk {name} does not exist on the array")
        if not self._mapped(name):
            self._run("svctask", "mkvdiskhostmap", "-force", "-host", self.host_name, name)
        path = vdisk.get("sim_data_path")
        if not path:
            raise DriverError(f"the array at {self.address} gives no data path for vdisk "
                              f"{name}: storwize_connector = simulator works only with "
                              f"volmigrate's Storwize simulator")
        return {"access": base.ACCESS_PATH, "path": path, "vdisk": name}

    def connection_valid(self, volume: dict, connection: dict) -> bool:
        vdisk = self._vdisk(volume)
        return vdisk is not None and vdisk.get("sim_data_path") == connection["path"]

    def disconnect_volume(self, volume: dict, connection: dict) -> None:
        name = connection.get("vdisk") or self.vdisk_name(volume)
        try:
            if self._mapped(name):
                self._run("svctask", "rmvdiskhostmap", "-host", self.host_name, name)
        except StorwizeCommandError as exc:
            if exc.code not in NOT_FOUND_CODES:
                raise

    # -- the array's own moves ------------------------------------------------
    def can_migrate_within_backend(self, volume: dict, dest_pool: str) -> bool:
        return dest_pool in self.pools() and dest_pool != self._pool_of(volume)

    def _migration_of(self, vdisk: dict[str, str]) -> dict[str, str] | None:
        for block in _blocks(self._run("svcinfo", "lsmigrate", "-delim", DELIM)):
            if block.get("migrate_source_vdisk_index") == vdisk["id"]:
                return block
        return None

    def migrate_within_backend(self, volume: dict, dest_pool: str) -> None:
        name = self.vdisk_name(volume)
        vdisk = self._vdisk(volume)
        if vdisk is None:
            raise DriverError(f"vdisk {name} does not exist on the array")
        if self._migration_of(vdisk) is not None:
            LOG.info("vdisk %s is already being moved by the array; waiting for it", name)
            return
        if vdisk["mdisk_grp_name"] == dest_pool:
            return  # moved already (before a restart)
        self._run("svctask", "migratevdisk", "-mdiskgrp", dest_pool, "-vdisk", name)

    def get_migration_progress(self, volume: dict) -> tuple[int, int] | None:
        vdisk = self._vdisk(volume)
        if vdisk is None:
            return None
        block = self._migration_of(vdisk)
        if block is None:
            return None
        capacity = int(vdisk["capacity"])
        return capacity * int(block.get("progress", "0")) // 100, capacity

    def volume_pool(self, volume: dict) -> str:
        vdisk = self._vdisk(volume)
        if vdisk is None:
            raise DriverError(f"vdisk {self.vdisk_name(volume)} does not exist on the array")
        return vdisk["mdisk_grp_name"]
