"""The driver interface every backend implements.

A driver manages the volumes of one backend (one section of the config file).
It is handed volume *references*, plain dicts with at least::

    {"id": str, "name_id": str | None, "size": int (bytes),
     "host": "node@backend#pool", "provider_location": str | None}

The backend object that holds a volume's data is named after
``name_id or id`` (see :func:`object_id`): after a migration the volume keeps
its id but its data lives in the object created for the hidden destination.

Everything a driver returns is JSON-serializable, because the migration flows
persist it so that another process can resume them.
"""

from __future__ import annotations

import abc
import os
import stat
from typing import Any, BinaryIO, ClassVar

from oslo_config import cfg

from volmigrate.drivers.exceptions import DriverError

# Values of the "access" key of a connection.
ACCESS_PATH = "path"      # a local file or block device path, copied by path
ACCESS_BLOCK = "block"    # a local block device path, copied by path too
ACCESS_STREAM = "stream"  # only a file-like object, from open_connection()
LOCAL_PATH_ACCESS = (ACCESS_PATH, ACCESS_BLOCK)


def object_id(volume: dict) -> str:
    """Id of the backend object holding the volume's data."""
    return volume.get("name_id") or volume["id"]


def open_device_or_file(path: str, writable: bool = False) -> BinaryIO:
    """Open a volume's data without following a symbolic link.

    A link put in place of a volume's file would make a copy read (or write)
    data outside the backend; only a regular file or a block device is a
    volume's data.
    """
    flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise DriverError(f"backend object {path} does not exist") from None
    except OSError as exc:
        if os.path.islink(path):
            raise DriverError(f"backend object {path} is a symbolic link; volmigrate "
                              f"does not follow links out of a backend") from None
        raise DriverError(f"cannot open {path}: {exc.strerror}") from exc
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        os.close(fd)
        raise DriverError(f"backend object {path} is neither a regular file nor a block "
                          f"device")
    return os.fdopen(fd, "r+b" if writable else "rb")


def move_target(source: "VolumeDriver", dest: "VolumeDriver", dest_pool: str) -> str | None:
    """What a driver-assisted move into `dest_pool` of `dest`'s backend targets, or None.

    A pool of the source's own backend is its own target; another backend
    is one only when it is driven by the same kind of driver and says where
    it lies (:meth:`VolumeDriver.move_target`), for the source to judge.
    """
    if source is dest:
        return dest_pool
    if type(source) is not type(dest):
        return None
    return dest.move_target(dest_pool)


class _DisconnectOnClose:
    """A file-like handle that also releases its connection when closed."""

    def __init__(self, handle: BinaryIO, release) -> None:
        self._handle, self._release = handle, release

    def close(self) -> None:
        try:
            self._handle.close()
        finally:
            self._release()

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VolumeDriver(abc.ABC):
    """Base class of the backends.

    ``options`` are registered by the engine in the backend's config section
    and reach the driver as ``self.configuration`` (attribute access).
    """

    #: oslo.config options this driver reads from its backend section.
    options: ClassVar[list[cfg.Opt]] = []
    # Capabilities reported with the pools (Cinder's names, shown by get_pools).
    vendor_name: ClassVar[str] = "Open Source"
    driver_version: ClassVar[str] = "1.0"
    storage_protocol: ClassVar[str] = "local"

    def __init__(self, configuration: Any, backend_name: str, state_path: str) -> None:
        self.configuration = configuration
        self.backend_name = backend_name
        self.state_path = state_path

    def do_setup(self) -> None:
        """Check the backend can work here; raise DriverConfigError if not."""

    @property
    def default_pool(self) -> str:
        """Pool used when a host string names no ``#pool``."""
        return self.pools()[0]

    def pools(self) -> list[str]:
        return [p["pool_name"] for p in self.get_volume_stats()["pools"]]

    @abc.abstractmethod
    def get_volume_stats(self) -> dict:
        """Capacity and capabilities, as Cinder reports them.

        Returns ``{"volume_backend_name", "migration_progress_report": bool,
        "pools": [{"pool_name", "total_capacity_gb", "free_capacity_gb"}]}``.
        ``migration_progress_report`` tells whether :meth:`get_migration_progress`
        can report the progress of a driver-assisted move.
        """

    @abc.abstractmethod
    def create_volume(self, volume: dict) -> dict:
        """Create the backend object; return updates such as provider_location."""

    def new_volumes_read_zeros(self) -> bool:
        """Whether a new volume reads as zeros everywhere (a sparse file, a thin LV).

        Only then may a copy into it skip the source's zero blocks and keep it
        thin; a linear LV, for one, still holds the old data of its extents.
        """
        return True

    @abc.abstractmethod
    def delete_volume(self, volume: dict) -> None:
        """Delete the backend object. Deleting one that does not exist is not an error."""

    def access_kind(self) -> str:
        """What connect_volume will give: ``path``, ``block`` or ``stream``.

        Lets the engine choose the case before connecting: a copy between local
        paths (the kernel copy, or dd with ``copy_method = dd``) or file I/O.
        """
        return ACCESS_PATH

    @abc.abstractmethod
    def connect_volume(self, volume: dict, writable: bool) -> dict:
        """Make the volume reachable from this host for a copy.

        Returns a connection dict with ``access`` one of ``path``/``block``
        (and ``path``: a local file or device the copy opens) or ``stream``
        (the data is reachable only through :meth:`open_connection`). A block
        connection over a file may name it as ``backing_file``: the copy then
        asks that file where the holes are and skips them.
        """

    def connection_valid(self, volume: dict, connection: dict) -> bool:
        """Whether a connection made earlier (maybe before a restart) still reaches the volume.

        A resumed migration reuses the connections its flow saved; a loop device
        or an iSCSI session may not have survived a reboot, or may now reach
        another volume. The default checks that a path still exists.
        """
        path = connection.get("path")
        return path is None or os.path.exists(path)

    @abc.abstractmethod
    def disconnect_volume(self, volume: dict, connection: dict) -> None:
        """Undo connect_volume. Idempotent: disconnecting twice is not an error."""

    def open_connection(self, connection: dict, writable: bool) -> BinaryIO:
        """A file-like object on a ``stream`` connection (seekable, with tell())."""
        raise NotImplementedError(f"{type(self).__name__} gives no file-like access")

    # -- proving a copy before its source is deleted ---------------------------
    def volume_identity(self, volume: dict) -> dict:
        """Which backend object holds the volume's data now, looked up afresh.

        Recorded when a migration creates its destination (the volume's
        ``provider_id``) and asked again before the source is deleted: a
        destination removed or replaced during the copy (a cleanup job, a
        file system mounted over the directory) then no longer matches, and
        the migration fails with the source kept. Found by the volume's own
        reference, never through a handle or device held since the copy
        started (a loop device keeps a deleted file readable). Returns
        JSON-serializable values that change when the object is replaced
        (device and inode, an LV's uuid, an array's vdisk id) and its size;
        raises DriverError when the object does not exist. A backend that
        cannot tell returns ``{}``: then only a fresh open and the size are
        checked.
        """
        return {}

    def open_volume(self, volume: dict, writable: bool = False) -> BinaryIO:
        """A new handle on the volume's data, reached through a new connection.

        Used to prove (and with ``migration_verify = checksum`` to hash) a
        copy before its source is deleted, and by tests. Closing the handle
        releases the connection.
        """
        connection = self.connect_volume(volume, writable)
        try:
            if connection["access"] == ACCESS_STREAM:
                handle = self.open_connection(connection, writable)
            else:
                handle = open_device_or_file(connection["path"], writable)
        except BaseException:
            self.disconnect_volume(volume, connection)
            raise
        return _DisconnectOnClose(handle, lambda: self.disconnect_volume(volume, connection))

    # -- driver-assisted migration (optional) --------------------------------
    # A backend that can move a volume itself implements these; the engine
    # then runs the driver-assisted flow instead of copying through this host.
    # The move's *target* is a pool of this backend (Storwize ``migratevdisk``
    # between its pools), or another backend's :meth:`move_target` when that
    # backend lies in the same storage (an RBD pool of the same Ceph cluster,
    # moved by Ceph's live migration). The volume keeps its backend object
    # name: only where it lives changes.
    #: Whether abort_move() can undo a move not finished yet (then a cancel is allowed).
    can_abort_moves: ClassVar[bool] = False
    #: Longest wait between two asks of a move's progress: an array's CLI over SSH
    #: costs a round trip; a driver that knows it from its own thread answers at once.
    move_poll_seconds: ClassVar[float] = 1.0

    def move_target(self, pool: str) -> str | None:
        """How another backend's driver names `pool` of this backend as a move's target.

        Cinder's ``location_info``. None (the default): volumes reach this
        backend from another one only by a host copy.
        """
        return None

    def can_migrate_within_backend(self, volume: dict, dest_pool: str) -> bool:
        """True if this backend can move the volume to the target `dest_pool` itself."""
        return False

    def migrate_within_backend(self, volume: dict, dest_pool: str) -> None:
        """Start moving the volume to `dest_pool` and return without waiting.

        Must be idempotent, because a resumed flow calls it again: when a move
        of this volume is already running, or the volume is already in
        `dest_pool`, it does nothing (a move that a killed process left half
        done goes on where the backend allows). A refusal raises DriverError.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot move volumes itself")

    def get_migration_progress(self, volume: dict) -> tuple[int, int] | None:
        """(bytes moved, bytes total) of a driver-assisted move, or None if none runs."""
        return None

    def complete_move(self, volume: dict, dest_pool: str) -> None:
        """Make a move that has ended final (Ceph's migration commit); idempotent."""

    def abort_move(self, volume: dict) -> bool:
        """Undo a move not completed yet; True when the volume is where it was."""
        return False

    def volume_pool(self, volume: dict, target: str | None = None) -> str:
        """Where the volume's data is for good now, as the backend sees it: a pool of
        this backend, or `target` once a move to another backend's target completed."""
        raise NotImplementedError(f"{type(self).__name__} cannot move volumes itself")

    def moved_within_backend(self, volume: dict, pool: str) -> dict:
        """Updates of the volume's record once the backend has moved it to `pool`
        (such as a provider_location that names the pool)."""
        return {}
