"""The object-store backend: volumes striped over fixed-size objects, RBD style.

A Ceph RBD image is a set of RADOS objects of ``object_size`` bytes (4 MiB by
default) named ``<prefix>.<index as 16 hex digits>``; an object that was never
written reads as zeros, and the image is reachable only through librbd's
file-like handle, never as a path dd could open. This backend keeps exactly
that layout in a local directory (one directory per volume, one file per
object), so the file-I/O copy of generic migrations runs against a real
non-path backend here. It is not Ceph: there is no cluster, replication or
network behind it.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
from typing import BinaryIO

from oslo_config import cfg
from oslo_log import log as logging

from volmigrate.drivers import base
from volmigrate.drivers.exceptions import DriverConfigError, DriverError
from volmigrate.drivers.opt_types import PathOpt

LOG = logging.getLogger(__name__)

HEADER = "header.json"
OBJECT_PREFIX = "data."

objectstore_opts = [
    PathOpt("objectstore_dir",
            help="Directory holding this backend's volumes (one directory each). "
                 "Default: <state_path>/objects/<backend section name>."),
    # RBD's object sizes: order 12 (4 KiB) to 25 (32 MiB).
    cfg.IntOpt("objectstore_object_size", default=4 * 1024 * 1024, min=4096,
               max=32 * 1024 * 1024,
               help="Size in bytes of the objects a volume is striped over (a power "
                    "of two, as RBD's object size). Applies to new volumes."),
]


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ObjectVolumeIO(io.RawIOBase):
    """A seekable file-like handle on one volume, as librbd's Image gives.

    Reads of objects never written return zeros; writes of all-zero data to
    an object that does not exist are dropped, so volumes stay thin. flush()
    makes every write so far durable (fsync of the objects and the directory),
    which the copy's checkpoints rely on.
    """

    def __init__(self, volume_dir: str, size: int, object_size: int, writable: bool) -> None:
        super().__init__()
        self.volume_dir, self.size, self.object_size = volume_dir, size, object_size
        self._writable = writable
        self._pos = 0
        self._fds: dict[int, int] = {}
        self._dirty: set[int] = set()
        self._new_objects = False

    # -- io.RawIOBase ------------------------------------------------------
    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return self._writable

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base_pos = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}[whence]
        if base_pos + offset < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self._pos = base_pos + offset
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        want = max(0, min(len(view), self.size - self._pos))
        done = 0
        while done < want:
            index, offset = divmod(self._pos + done, self.object_size)
            n = min(want - done, self.object_size - offset)
            fd = self._fd(index, create=False)
            got = os.preadv(fd, [view[done:done + n]], offset) if fd is not None else 0
            view[done + got:done + n] = bytes(n - got)  # unwritten bytes read as zeros
            done += n
        self._pos += done
        return done

    def write(self, data) -> int:
        if not self._writable:
            raise io.UnsupportedOperation("volume opened read-only")
        view = memoryview(data).cast("B")
        if self._pos + len(view) > self.size:
            raise OSError(errno.ENOSPC, f"write past the end of the volume ({self.size} bytes)")
        done = 0
        while done < len(view):
            index, offset = divmod(self._pos + done, self.object_size)
            n = min(len(view) - done, self.object_size - offset)
            piece = view[done:done + n]
            fd = self._fd(index, create=False)
            if fd is None and not any(piece):
                done += n  # zeros over an absent object: nothing to store
                continue
            if fd is None:
                fd = self._fd(index, create=True)
            written = 0
            while written < n:
                written += os.pwrite(fd, piece[written:], offset + written)
            self._dirty.add(index)
            done += n
        self._pos += done
        return done

    def flush(self) -> None:
        for index in sorted(self._dirty):
            os.fsync(self._fds[index])
        self._dirty.clear()
        if self._new_objects:
            _fsync_dir(self.volume_dir)
            self._new_objects = False

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._writable:
                self.flush()
        finally:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            super().close()

    # -- objects -------------------------------------------------------------
    def _path(self, index: int) -> str:
        return os.path.join(self.volume_dir, f"{OBJECT_PREFIX}{index:016x}")

    def _fd(self, index: int, create: bool) -> int | None:
        fd = self._fds.get(index)
        if fd is not None:
            return fd
        flags = os.O_RDWR if self._writable else os.O_RDONLY
        if create:
            flags |= os.O_CREAT
        try:
            fd = os.open(self._path(index), flags, 0o600)
        except FileNotFoundError:
            if create:
                raise
            return None
        if create:
            self._new_objects = True
        self._fds[index] = fd
        return fd


class ObjectStoreDriver(base.VolumeDriver):
    options = objectstore_opts

    @property
    def root(self) -> str:
        return self.configuration.objectstore_dir or os.path.join(
            self.state_path, "objects", self.backend_name)

    def do_setup(self) -> None:
        size = self.configuration.objectstore_object_size
        if size & (size - 1):
            raise DriverConfigError(f"objectstore_object_size {size} is not a power of two")
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise DriverConfigError(f"objectstore_dir {self.root} cannot be created: "
                                    f"{exc}") from exc

    def volume_dir(self, volume: dict) -> str:
        return os.path.join(self.root, f"volume-{base.object_id(volume)}")

    def get_volume_stats(self) -> dict:
        st = os.statvfs(self.root)
        gib = 1024 ** 3
        return {
            "volume_backend_name": self.backend_name,
            "migration_progress_report": False,
            "pools": [{
                "pool_name": self.backend_name,
                "total_capacity_gb": round(st.f_blocks * st.f_frsize / gib, 2),
                "free_capacity_gb": round(st.f_bavail * st.f_frsize / gib, 2),
            }],
        }

    def pools(self) -> list[str]:
        return [self.backend_name]

    def create_volume(self, volume: dict) -> dict:
        path = self.volume_dir(volume)
        header = {"size": volume["size"],
                  "object_size": self.configuration.objectstore_object_size}
        try:
            os.mkdir(path, 0o700)
        except FileExistsError as exc:
            raise DriverError(f"backend object {path} already exists") from exc
        except OSError as exc:
            raise DriverError(f"cannot create {path}: {exc}") from exc
        try:
            tmp = os.path.join(path, HEADER + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(header, f)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, os.path.join(path, HEADER))
            _fsync_dir(path)
            _fsync_dir(self.root)
        except OSError as exc:
            shutil.rmtree(path, ignore_errors=True)
            raise DriverError(f"cannot write the header of {path}: {exc}") from exc
        return {"provider_location": path}

    def delete_volume(self, volume: dict) -> None:
        try:
            shutil.rmtree(self.volume_dir(volume))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise DriverError(f"cannot delete {self.volume_dir(volume)}: {exc}") from exc

    def _header(self, path: str) -> dict:
        try:
            with open(os.path.join(path, HEADER), encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            raise DriverError(f"backend object {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise DriverError(f"backend object {path} has an unreadable header: {exc}") from exc

    def access_kind(self) -> str:
        return base.ACCESS_STREAM

    def volume_identity(self, volume: dict) -> dict:
        """The volume directory's device and inode (made again, it differs) and size."""
        path = self.volume_dir(volume)
        header = self._header(path)
        st = os.lstat(path)
        return {"dev": st.st_dev, "ino": st.st_ino, "size": header["size"]}

    def connect_volume(self, volume: dict, writable: bool) -> dict:
        path = self.volume_dir(volume)
        header = self._header(path)
        return {"access": base.ACCESS_STREAM, "volume_dir": path, "size": header["size"],
                "object_size": header["object_size"]}

    def connection_valid(self, volume: dict, connection: dict) -> bool:
        return os.path.exists(os.path.join(connection["volume_dir"], HEADER))

    def disconnect_volume(self, volume: dict, connection: dict) -> None:
        """Nothing to undo: a connection is only the directory's name."""

    def open_connection(self, connection: dict, writable: bool) -> BinaryIO:
        return ObjectVolumeIO(connection["volume_dir"], connection["size"],
                              connection["object_size"], writable)

    def open_volume(self, volume: dict, writable: bool = False) -> BinaryIO:
        """A handle on a volume outside any migration (tests, the demo, a consumer)."""
        return self.open_connection(self.connect_volume(volume, writable), writable)
