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

import errno
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


_clients: dict[tuple, "RadosClient"] = {}
_clients_lock = threading.Lock()


def shared_client(conffile: str, user: str | None, keyring: str | None, cluster_name: str,
                  timeout: int) -> "RadosClient":
    """The one RadosClient of this process for these settings.

    Backends on one cluster with the same user share it: two connections of
    one process would take each other for dead clients, and the first to
    break the other's stale lock would blocklist it (measured here: an
    abort on one backend's connection blocklisted the other's).
    """
    key = (conffile, user or None, keyring or None, cluster_name, timeout)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = RadosClient(*key)
        return _clients[key]


class RadosClient:
    """One librados connection, opened on first use and shared by the driver's threads.

    librados is thread-safe; a connection per operation would cost a
    monitor round trip and a cephx handshake each time. librados finds the
    monitors again by itself after an outage, so a connection is kept across
    failed operations; only one the cluster has blocklisted is dropped (not
    shut down: images other threads have open on it would crash the process)
    and made again at the next use.

    Sharing one connection has a price Cinder (a connection per operation)
    does not pay: an image closed while the cluster did not answer (an OSD
    down) keeps its exclusive lock, held by this very connection, and librbd
    never breaks a lock whose holder is itself (it would blocklist itself).
    :meth:`break_stale_locks` breaks such a lock once its watch is gone.
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

    def _connect(self, **settings: str):
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
            for option, value in settings.items():
                client.conf_set(option, value)
            monitors = client.conf_get("mon_host") or None
            if self.timeout >= 0:
                client.connect(timeout=self.timeout)
            else:
                client.connect()
        except rados.Error as exc:
            if client is not None:
                client.shutdown()
            raise DriverError(f"cannot connect to {self.describe()}: "
                              f"{explain(exc, self.timeout, monitors)}") from None
        return client

    def ioctx(self, pool: str):
        """An I/O context on `pool`; the caller closes it."""
        rados, _ = bindings()
        try:
            return self.cluster().open_ioctx(pool)
        except rados.ObjectNotFound:
            raise DriverError(f"pool {pool} does not exist in {self.describe()}") from None
        except rados.Error as exc:
            self.forget_if_blocklisted(exc)
            raise DriverError(f"cannot open pool {pool} of {self.describe()}: "
                              f"{explain(exc, self.timeout)}") from None

    def fsid(self) -> str:
        return self.cluster().get_fsid()

    def pool_deleted(self, pool: str) -> bool:
        """Whether the cluster says `pool` does not exist; False when it cannot say.

        librbd reports I/O to a deleted pool as EPERM or ENOENT ("permission",
        "not found"), which would send an administrator to check keys.
        """
        rados, _ = bindings()
        try:
            return not self.cluster().pool_exists(pool)
        except (rados.Error, DriverError):
            return False

    def probe(self, pool: str) -> str | None:
        """Why an OSD of `pool` does not answer a read, or None when one does.

        One stat, bounded by the operation timeout: a question the cluster
        answers at once when it is well, whatever the object.
        """
        rados, _ = bindings()
        try:
            ioctx = self.ioctx(pool)
        except DriverError as exc:
            return str(exc)
        try:
            ioctx.stat("rbd_directory")
        except rados.ObjectNotFound:
            pass  # an answer
        except rados.Error as exc:
            self.forget_if_blocklisted(exc)
            return f"pool {pool} of {self.describe()}: {explain(exc, self.timeout)}"
        finally:
            ioctx.close()
        return None

    def mon_command(self, command: dict) -> bytes:
        import json

        rados, _ = bindings()
        try:
            ret, out, err = self.cluster().mon_command(json.dumps(command), b"",
                                                       timeout=max(self.timeout, 0))
        except rados.Error as exc:
            self.forget_if_blocklisted(exc)
            raise DriverError(f"{self.describe()} did not answer "
                              f"{command['prefix']!r}: {explain(exc, self.timeout)}") from None
        if ret != 0:
            raise DriverError(f"{self.describe()} refused {command['prefix']!r}: {err}")
        return out

    def forget_if_blocklisted(self, exc: Exception) -> None:
        """After `exc` of an operation: a connection the cluster blocklisted (ESHUTDOWN)
        is dead for good; the next use makes another."""
        if getattr(exc, "errno", None) == errno.ESHUTDOWN:
            with self._lock:
                self._cluster = None

    def break_stale_locks(self, pool: str, name: str | None = None,
                          image_id: str | None = None) -> int:
        """Break the exclusive locks of an image that this connection holds through
        handles closed since (their watch is gone); how many were broken.

        Without blocklisting: the holder is this process, whose handle is
        closed. The break is made on a connection of its own whose librbd
        does not blocklist (``rbd_blocklist_on_break_lock = false``).
        """
        rados, rbd = bindings()
        cluster = self.cluster()
        ours = cluster.get_addrs()
        ioctx = self.ioctx(pool)
        try:
            with rbd.Image(ioctx, name, image_id=image_id, read_only=True) as image:
                watches = {f"auto {w['cookie']}" for w in image.watchers_list()
                           if w["addr"] == ours}
                lockers = image.list_lockers() or {}  # [] when there is none
                stale = [(client, cookie) for client, cookie, address
                         in lockers.get("lockers", [])
                         if address == ours and cookie not in watches]
        except rbd.Error:
            return 0  # gone, or in no state to tell: the caller's own error says more
        finally:
            ioctx.close()
        if not stale:
            return 0
        breaker = self._connect(rbd_blocklist_on_break_lock="false")
        try:
            ioctx = breaker.open_ioctx(pool)
            try:
                # Read-only: a migration's image opened read-write by a client that
                # does not hold its lock says EROFS.
                with rbd.Image(ioctx, name, image_id=image_id, read_only=True) as image:
                    for client, cookie in stale:
                        image.break_lock(client, cookie)
            finally:
                ioctx.close()
        except (rados.Error, rbd.Error) as exc:
            raise DriverError(f"cannot break this process's stale lock on image "
                              f"{pool}/{name or image_id}: {explain(exc, self.timeout)}") from None
        finally:
            breaker.shutdown()
        return len(stale)


def explain(exc: Exception, timeout: int, monitors: str | None = None) -> str:
    """Why librados failed, in words an administrator can act on (`monitors`: the
    mon_host a connection tried)."""
    code = getattr(exc, "errno", None)
    if code == errno.ETIMEDOUT or "timed out" in str(exc).lower():
        if monitors:
            return (f"no monitor answered at {monitors} within rados_connect_timeout = "
                    f"{timeout} s ({exc})")
        return f"no answer within rados_connect_timeout = {timeout} s ({exc})"
    if code in (errno.EPERM, errno.EACCES):
        return f"permission denied: check rbd_user and rbd_keyring_conf ({exc})"
    return str(exc)
