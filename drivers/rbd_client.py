"""Ceph's Python bindings and one cluster connection per RBD backend.

``rados`` and ``rbd`` are compiled against the distribution's Ceph
libraries and come from its packages (Debian: python3-rados, python3-rbd),
not from the package index, whose copies are stale or do not build. A
virtual environment does not see the distribution's ``dist-packages``, so
when the plain import fails these two modules (and only they) are loaded
from there, if they were built for this interpreter's ABI.

librados waits for ever by default: for a monitor that does not answer, an
OSD that is down, a pool that is full. Cinder's ``rados_connect_timeout``
bounds the connection and, as in Cinder, also every monitor and OSD
operation, so that a lost cluster is an error and never a hang.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import threading
from types import ModuleType

from volmigrate.drivers.exceptions import DriverConfigError, DriverError

# Where Debian and Ubuntu put the bindings of their python3-rados/python3-rbd.
DIST_PACKAGES = ("/usr/lib/python3/dist-packages",)
INSTALL_HINT = "apt-get install python3-rados python3-rbd (Debian, Ubuntu)"


def _load_from_distribution(name: str) -> ModuleType | None:
    for directory in DIST_PACKAGES:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(directory, name + suffix)
            if not os.path.exists(path):
                continue
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except ImportError:
                continue
            sys.modules[name] = module
            return module
    return None


def bindings() -> tuple[ModuleType, ModuleType]:
    """The ``rados`` and ``rbd`` modules; DriverConfigError when Ceph's are not installed."""
    modules = []
    for name, api in (("rados", "Rados"), ("rbd", "RBD")):
        try:
            module = importlib.import_module(name)
            if not hasattr(module, api):  # a directory of that name on sys.path
                raise ImportError(name)
            modules.append(module)
        except ImportError:
            module = _load_from_distribution(name)
            if module is None:
                raise DriverConfigError(
                    f"the rbd driver needs Ceph's Python bindings ({name} for Python "
                    f"{sys.version_info.major}.{sys.version_info.minor}): "
                    f"{INSTALL_HINT}") from None
            modules.append(module)
    return modules[0], modules[1]


def available() -> bool:
    """Whether Ceph's bindings can be loaded here (tests skip on False)."""
    try:
        bindings()
    except DriverConfigError:
        return False
    return True


class RadosClient:
    """One librados connection, opened on first use and shared by the driver's threads.

    librados is thread-safe; a connection per operation would cost a
    monitor round trip and a cephx handshake each time. A connection that
    failed is dropped and made again at the next use.
    """

    def __init__(self, conffile: str, user: str | None, keyring: str | None,
                 cluster_name: str, timeout: int) -> None:
        self.conffile, self.user, self.keyring = conffile, user, keyring
        self.cluster_name, self.timeout = cluster_name, timeout
        self._cluster = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        where = self.conffile or "the default ceph.conf"
        return f"Ceph cluster {self.cluster_name} ({where}, user {self.user or 'admin'})"

    def cluster(self):
        with self._lock:
            if self._cluster is None:
                self._cluster = self._connect()
            return self._cluster

    def _connect(self):
        rados, _ = bindings()
        for option, path in (("rbd_ceph_conf", self.conffile),
                             ("rbd_keyring_conf", self.keyring)):
            if path and not os.path.isfile(path):
                raise DriverError(f"cannot connect to {self.describe()}: {option} {path} "
                                  f"does not exist")
        kwargs = {"clustername": self.cluster_name}
        if self.conffile:
            kwargs["conffile"] = self.conffile
        if self.user:
            kwargs["rados_id"] = self.user
        client, monitors = None, None
        try:
            client = rados.Rados(**kwargs)
            if self.keyring:
                client.conf_set("keyring", self.keyring)
            if self.timeout >= 0:
                for option in ("rados_osd_op_timeout", "rados_mon_op_timeout",
                               "client_mount_timeout"):
                    client.conf_set(option, str(self.timeout))
            monitors = client.conf_get("mon_host") or None
            if self.timeout >= 0:
                client.connect(timeout=self.timeout)
            else:
                client.connect()
        except rados.Error as exc:
            if client is not None:
                client.shutdown()
            raise DriverError(f"cannot connect to {self.describe()}: "
                              f"{_reason(exc, self.timeout, monitors)}") from None
        return client

    def ioctx(self, pool: str):
        """An I/O context on `pool`; the caller closes it."""
        rados, _ = bindings()
        try:
            return self.cluster().open_ioctx(pool)
        except rados.ObjectNotFound:
            raise DriverError(f"pool {pool} does not exist in {self.describe()}") from None
        except rados.Error as exc:
            self.reset()
            raise DriverError(f"cannot open pool {pool} of {self.describe()}: "
                              f"{_reason(exc, self.timeout)}") from None

    def fsid(self) -> str:
        return self.cluster().get_fsid()

    def mon_command(self, command: dict) -> bytes:
        import json

        rados, _ = bindings()
        try:
            ret, out, err = self.cluster().mon_command(json.dumps(command), b"",
                                                       timeout=max(self.timeout, 0))
        except rados.Error as exc:
            self.reset()
            raise DriverError(f"{self.describe()} did not answer "
                              f"{command['prefix']!r}: {_reason(exc, self.timeout)}") from None
        if ret != 0:
            raise DriverError(f"{self.describe()} refused {command['prefix']!r}: {err}")
        return out

    def reset(self) -> None:
        with self._lock:
            cluster, self._cluster = self._cluster, None
        if cluster is not None:
            try:
                cluster.shutdown()
            except Exception:  # noqa: BLE001 - a dead connection may fail to close too
                pass


def _reason(exc: Exception, timeout: int, monitors: str | None = None) -> str:
    """Why librados failed, in words an administrator can act on.

    With `monitors` the failure is the connection's: there librados says
    "object not found" for a user with no key in the keyring.
    """
    errno = getattr(exc, "errno", None)
    if errno == 110 or "timed out" in str(exc).lower():
        if monitors:
            return (f"no monitor answered at {monitors} within rados_connect_timeout = "
                    f"{timeout} s ({exc})")
        return f"no answer within rados_connect_timeout = {timeout} s ({exc})"
    if errno in (1, 13):
        return f"permission denied: check rbd_user and rbd_keyring_conf ({exc})"
    if errno == 2 and monitors:
        return f"no key for the user in its keyring: check rbd_user and rbd_keyring_conf ({exc})"
    return str(exc)
