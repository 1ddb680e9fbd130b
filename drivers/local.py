"""The local backend: volumes are sparse files in a directory of this host.

Useful on its own (a single host, tests, the demo) and as the reference for
driver writers. ``local_access`` chooses how a migration reaches the data:
the file's path (copied by the kernel copy, or by dd with ``copy_method =
dd``), a loop block device over the file (the same copies, between real block
devices), or only a file-like object (the file-I/O copy).
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from oslo_config import cfg
from oslo_log import log as logging

from volmigrate.drivers import base, loopdev
from volmigrate.drivers.exceptions import DriverConfigError, DriverError
from volmigrate.drivers.opt_types import PathOpt

LOG = logging.getLogger(__name__)

LOOP_CONTROL = "/dev/loop-control"

local_opts = [
    PathOpt("local_volume_dir",
            help="Directory holding this backend's volume files. "
                 "Default: <state_path>/volumes/<backend section name>."),
    cfg.StrOpt("local_access", default=base.ACCESS_PATH,
               choices=[(base.ACCESS_PATH, "the copy reads or writes the volume file itself"),
                        (base.ACCESS_BLOCK, "volumes are attached as loop block "
                                            "devices (needs root and /dev/loop-control)"),
                        (base.ACCESS_STREAM, "only a file-like object is given, so "
                                             "migrations use the file-I/O copy")],
               help="How a migration reaches this backend's volumes."),
]


class LocalDriver(base.VolumeDriver):
    options = local_opts

    @property
    def volume_dir(self) -> str:
        return self.configuration.local_volume_dir or os.path.join(
            self.state_path, "volumes", self.backend_name)

    def do_setup(self) -> None:
        try:
            os.makedirs(self.volume_dir, exist_ok=True)
        except OSError as exc:
            raise DriverConfigError(
                f"local_volume_dir {self.volume_dir} cannot be created: {exc}") from exc
        if self.configuration.local_access == base.ACCESS_BLOCK:
            if os.geteuid() != 0 or not os.path.exists(LOOP_CONTROL):
                raise DriverConfigError(
                    f"backend {self.backend_name}: local_access = block needs root "
                    f"and {LOOP_CONTROL}")

    def volume_path(self, volume: dict) -> str:
        return os.path.join(self.volume_dir, f"volume-{base.object_id(volume)}")

    def _checked_path(self, volume: dict) -> str:
        """The volume's file, refused when it is missing, a link or not a regular file."""
        path = self.volume_path(volume)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise DriverError(f"backend object {path} does not exist") from None
        except OSError as exc:
            raise DriverError(f"cannot reach {path}: {exc.strerror}") from exc
        if stat.S_ISLNK(mode):
            raise DriverError(f"backend object {path} is a symbolic link; volmigrate does "
                              f"not follow links out of a backend")
        if not stat.S_ISREG(mode):
            raise DriverError(f"backend object {path} is not a regular file")
        return path

    def get_volume_stats(self) -> dict:
        st = os.statvfs(self.volume_dir)
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
        path = self.volume_path(volume)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise DriverError(f"backend object {path} already exists") from exc
        except OSError as exc:
            raise DriverError(f"cannot create {path}: {exc}") from exc
        try:
            os.ftruncate(fd, volume["size"])  # sparse: no blocks allocated
        except OSError as exc:
            os.close(fd)
            os.unlink(path)
            raise DriverError(f"cannot size {path}: {exc}") from exc
        os.close(fd)
        return {"provider_location": path}

    def delete_volume(self, volume: dict) -> None:
        try:
            os.unlink(self.volume_path(volume))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise DriverError(f"cannot delete {self.volume_path(volume)}: {exc}") from exc

    def access_kind(self) -> str:
        return self.configuration.local_access

    def connect_volume(self, volume: dict, writable: bool) -> dict:
        path = self._checked_path(volume)
        access = self.configuration.local_access
        if access == base.ACCESS_BLOCK:
            device = self._loop_device_of(path, writable)
            if device is None:
                device = loopdev.attach(path, read_only=not writable)
                LOG.debug("Attached %s as %s", path, device)
            return {"access": base.ACCESS_BLOCK, "path": device, "backing_file": path}
        return {"access": access, "path": path}

    @staticmethod
    def _loop_device_of(path: str, writable: bool) -> str | None:
        """A loop device already attached to `path` (by a run a crash interrupted)."""
        for device in loopdev.find(path):
            if device.maps(path) and device.read_only != writable:
                return device.name
        return None

    def connection_valid(self, volume: dict, connection: dict) -> bool:
        if connection.get("access") != base.ACCESS_BLOCK:
            return os.path.exists(connection["path"])
        device = loopdev.info(connection["path"])
        # A loop over a file removed since no longer reaches the volume's file.
        return device is not None and not device.deleted and device.maps(
            self.volume_path(volume))

    def disconnect_volume(self, volume: dict, connection: dict) -> None:
        if connection.get("access") != base.ACCESS_BLOCK:
            return
        device = loopdev.info(connection["path"])
        if device is None or not device.maps(connection["backing_file"]):
            return  # already detached, or reused for another file: not ours any more
        # Detached even when its file was removed since: it holds the file's space.
        loopdev.detach(connection["path"])

    def open_connection(self, connection: dict, writable: bool) -> BinaryIO:
        return base.open_device_or_file(connection["path"], writable)

    def volume_identity(self, volume: dict) -> dict:
        """The file's device and inode (a file removed and made again differs) and size."""
        with self.open_volume(volume) as handle:
            st = os.fstat(handle.fileno())
        return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size}

    def open_volume(self, volume: dict, writable: bool = False) -> BinaryIO:
        """The volume's file itself, whatever ``local_access`` says: a loop device
        attached during the copy may still hold a file that was deleted since."""
        handle = base.open_device_or_file(self._checked_path(volume), writable)
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            handle.close()
            raise DriverError(f"backend object {self.volume_path(volume)} is not a "
                              f"regular file")
        return handle
