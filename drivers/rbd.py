"""The RBD backend: volumes are images of a pool of a real Ceph cluster (librbd).

Options carry Cinder's RBD driver names (``rbd_pool``, ``rbd_ceph_conf``,
``rbd_user``, ``rbd_keyring_conf``, ``rados_connect_timeout``, ...), and an
image is named as Cinder names it, ``volume-<id>``. A volume is reachable
only through librbd (``access = stream``): host copies to and from RBD are
file-I/O copies through :class:`~volmigrate.drivers.rbd_io.RBDImageIO`,
which skips the objects that were never written.

Between two RBD backends of the same cluster (the same fsid, another pool),
as Cinder's RBD driver decides, the volume is moved by Ceph's own live
migration (:mod:`~volmigrate.drivers.rbd_migration`): no data crosses this
host.
"""

from __future__ import annotations

import errno
import json
import time
from typing import BinaryIO

from oslo_config import cfg
from oslo_log import log as logging

from volmigrate.drivers import base
from volmigrate.drivers.exceptions import DriverConfigError, DriverError
from volmigrate.drivers.rbd_client import bindings, explain, shared_client
from volmigrate.drivers.rbd_io import RBDImageIO
from volmigrate.drivers.rbd_migration import LiveMigrations

LOG = logging.getLogger(__name__)

GIB = 1024 ** 3

rbd_opts = [
    cfg.StrOpt("rbd_cluster_name", default="ceph",
               help="The name of the Ceph cluster (the name of its ceph.conf)."),
    cfg.StrOpt("rbd_pool", default="rbd", help="The RADOS pool where volumes are stored."),
    cfg.StrOpt("rbd_user", help="The RADOS client name (without client.); default: admin."),
    cfg.StrOpt("rbd_ceph_conf", default="",
               help="Path to the ceph configuration file; empty: librados's default."),
    cfg.StrOpt("rbd_keyring_conf", default="",
               help="Path to the keyring of rbd_user; empty: the one ceph.conf names."),
    # Cinder's default is -1 (librados waits for ever); a migration engine must
    # not hang on a lost monitor or a full pool, so ours bounds it.
    cfg.IntOpt("rados_connect_timeout", default=10, min=-1, max=3600,
               help="Seconds to wait for the cluster when connecting, and for each "
                    "monitor and OSD operation; -1 or 0 (librados's 'no limit'): wait for "
                    "ever, librados's default."),
    cfg.IntOpt("rbd_store_chunk_size", default=4, min=1, max=32,
               help="Object size of new images, in MiB (a power of two)."),
    # Cinder's names and defaults. An image stays busy after its client lost
    # the cluster (an OSD restarted, a process killed) until the cluster drops
    # that client's watch (osd_client_watch_timeout, 30 s by default).
    cfg.IntOpt("rados_connection_retries", default=3, min=0,
               help="How many times a delete finding the image busy is tried again."),
    cfg.IntOpt("rados_connection_interval", default=5, min=0,
               help="Seconds between those tries."),
]


class RBDDriver(base.VolumeDriver):
    options = rbd_opts
    vendor_name = "Open Source"
    driver_version = "1.0"
    storage_protocol = "ceph"
    can_abort_moves = True
    move_poll_seconds = 0.1  # progress comes from execute's thread in this process

    def __init__(self, configuration, backend_name: str, state_path: str) -> None:
        super().__init__(configuration, backend_name, state_path)
        conf = self.configuration
        self.client = shared_client(conf.rbd_ceph_conf, conf.rbd_user, conf.rbd_keyring_conf,
                                    conf.rbd_cluster_name, conf.rados_connect_timeout)
        self.migrations = LiveMigrations(self)

    @property
    def pool(self) -> str:
        return self.configuration.rbd_pool

    def do_setup(self) -> None:
        chunk = self.configuration.rbd_store_chunk_size
        if chunk & (chunk - 1):
            raise DriverConfigError(f"rbd_store_chunk_size {chunk} is not a power of two")
        rados, _ = bindings()
        try:
            ioctx = self.client.ioctx(self.pool)
        except DriverError as exc:
            raise DriverConfigError(str(exc)) from None
        try:
            # Any pool can be opened; reading in it needs the user's OSD caps.
            ioctx.stat("rbd_directory")
        except rados.ObjectNotFound:
            pass  # a pool without images yet
        except (rados.PermissionError, rados.PermissionDeniedError) as exc:
            raise DriverConfigError(f"cannot read pool {self.pool} of "
                                    f"{self.client.describe()}: permission denied: check "
                                    f"rbd_user's caps on the pool ({exc})") from None
        except rados.Error as exc:  # an OSD down: the pool may be back before it is used
            LOG.warning("Pool %s of %s cannot be read now: %s", self.pool,
                        self.client.describe(), explain(exc, self.client.timeout))
        finally:
            ioctx.close()

    # -- names and handles ---------------------------------------------------
    @staticmethod
    def image_name(volume: dict) -> str:
        return f"volume-{base.object_id(volume)}"

    def location(self) -> str:
        """This backend's place in Ceph, as Cinder's location_info: ``fsid:pool``."""
        return f"{self.client.fsid()}:{self.pool}"

    def _image(self, ioctx, name: str, read_only: bool = False):
        _, rbd = bindings()
        try:
            return rbd.Image(ioctx, name, read_only=read_only)
        except rbd.ImageNotFound:
            raise DriverError(f"image {self.pool}/{name} does not exist") from None
        except rbd.Error as exc:
            self.client.forget_if_blocklisted(exc)
            raise DriverError(f"cannot open image {self.pool}/{name}: {exc}") from None

    # -- stats ------------------------------------------------------------------
    def get_volume_stats(self) -> dict:
        df = json.loads(self.client.mon_command({"prefix": "df", "format": "json"}))
        pool = next((p for p in df["pools"] if p["name"] == self.pool), None)
        if pool is None:
            # The manager lists a new pool in df a few seconds after its creation;
            # a pool that does not exist at all is an error.
            self.client.ioctx(self.pool).close()
            stored, free = 0, df["stats"]["total_avail_bytes"]
        else:
            stored, free = pool["stats"].get("stored", 0), pool["stats"]["max_avail"]
        # From the OSD map, not `osd pool get-quota`, which also waits for the
        # manager's first stats of a new pool ("no stats for pool").
        dump = json.loads(self.client.mon_command({"prefix": "osd dump", "format": "json"}))
        quota = next((p for p in dump["pools"] if p["pool_name"] == self.pool), {})
        total = stored + free
        if quota.get("quota_max_bytes"):
            total = min(total, quota["quota_max_bytes"])
            free = max(0, min(free, quota["quota_max_bytes"] - stored))
        return {
            "volume_backend_name": self.backend_name,
            "migration_progress_report": True,
            "location_info": self.location(),
            "thin_provisioning_support": True,
            "pools": [{"pool_name": self.backend_name,
                       "total_capacity_gb": round(total / GIB, 2),
                       "free_capacity_gb": round(free / GIB, 2)}],
        }

    def pools(self) -> list[str]:
        return [self.backend_name]

    # -- volumes ----------------------------------------------------------------
    def create_volume(self, volume: dict) -> dict:
        _, rbd = bindings()
        name = self.image_name(volume)
        order = (self.configuration.rbd_store_chunk_size * 1024 * 1024).bit_length() - 1
        ioctx = self.client.ioctx(self.pool)
        try:
            rbd.RBD().create(ioctx, name, volume["size"], order=order, old_format=False)
        except rbd.ImageExists:
            raise DriverError(f"image {self.pool}/{name} already exists") from None
        except rbd.Error as exc:
            raise DriverError(f"cannot create image {self.pool}/{name}: "
                              f"{self._explain(exc)}") from None
        finally:
            ioctx.close()
        return {"provider_location": f"rbd://{self.client.fsid()}/{self.pool}/{name}"}

    def delete_volume(self, volume: dict) -> None:
        """Remove the image; one in a live migration not committed is put back first.

        librbd says a migration's source is not found and its destination is
        busy: only then is the migration looked for (and aborted). A busy
        image is tried again (rados_connection_retries times, every
        rados_connection_interval seconds), as Cinder does.
        """
        _, rbd = bindings()
        name = self.image_name(volume)
        conf = self.configuration
        try:
            ioctx = self.client.ioctx(self.pool)
        except DriverError:
            if not self.client.pool_deleted(self.pool):
                raise
            # Deleted with its pool (an administrator's `ceph osd pool delete`):
            # nothing of it is left to remove, and a leftover row must not wait for ever.
            LOG.warning("Image %s/%s is gone with its pool, which no longer exists",
                        self.pool, name)
            return
        aborted = broken = False
        retries = conf.rados_connection_retries
        try:
            while True:
                try:
                    rbd.RBD().remove(ioctx, name)
                    return
                except rbd.ImageNotFound:
                    if aborted or not self._abort_migration(name):
                        return
                    aborted = True  # a migration's source: back in our pool now
                except rbd.ImageBusy:
                    if not aborted and self._abort_migration(name):
                        aborted = True  # a migration's destination: gone now
                        continue
                    if not broken and self.client.break_stale_locks(self.pool, name):
                        broken = True  # our own lock, left by a handle closed in an outage
                        continue
                    if retries <= 0:
                        raise
                    retries -= 1
                    LOG.info("Image %s/%s is busy; deleting it again in %s s", self.pool,
                             name, conf.rados_connection_interval)
                    time.sleep(conf.rados_connection_interval)
        except rbd.Error as exc:
            raise DriverError(f"cannot delete image {self.pool}/{name}: "
                              f"{self._explain(exc)}") from None
        finally:
            ioctx.close()

    def _abort_migration(self, name: str) -> bool:
        try:
            return self.migrations.abort_image(name)
        except DriverError as exc:
            raise DriverError(f"cannot delete image {self.pool}/{name}: {exc}") from None

    def _explain(self, exc: Exception) -> str:
        """librados's error, and what stops writes to the pool when that is the cause."""
        text = explain(exc, self.client.timeout)
        if getattr(exc, "errno", None) in (errno.ETIMEDOUT, errno.EDQUOT, errno.ENOSPC):
            full = self.pool_full()
            if full:
                text = f"{full} ({text})"
        return text

    def pool_full(self, pool: str | None = None) -> str | None:
        """Why `pool` (by default this backend's) takes no writes (its quota, a full
        cluster), or None."""
        pool_name = pool or self.pool
        try:
            pools = json.loads(self.client.mon_command(
                {"prefix": "osd pool ls", "detail": "detail", "format": "json"}))
        except (DriverError, ValueError):
            return None
        found = next((p for p in pools if p.get("pool_name") == pool_name), None)
        flags = (found or {}).get("flags_names", "").split(",")
        if "full_quota" in flags:
            limits = [f"{what} {found[key]}" for key, what in (
                ("quota_max_bytes", "max_bytes"), ("quota_max_objects", "max_objects"))
                if found.get(key)]
            return (f"pool {pool_name} is full: its quota ({', '.join(limits)}) is reached "
                    f"(ceph osd pool set-quota)")
        if "full" in flags:
            return f"pool {pool_name} is full: the cluster is out of space"
        return None

    def volume_identity(self, volume: dict) -> dict:
        """The image's id (a re-created image gets another) and size."""
        ioctx = self.client.ioctx(self.pool)
        try:
            with self._image(ioctx, self.image_name(volume), read_only=True) as image:
                return {"image_id": image.id(), "size": image.size()}
        finally:
            ioctx.close()

    # -- host copies ----------------------------------------------------------
    def access_kind(self) -> str:
        return base.ACCESS_STREAM

    def connect_volume(self, volume: dict, writable: bool) -> dict:
        identity = self.volume_identity(volume)
        return {"access": base.ACCESS_STREAM, "pool": self.pool,
                "image": self.image_name(volume), "size": identity["size"],
                "image_id": identity["image_id"]}

    def connection_valid(self, volume: dict, connection: dict) -> bool:
        try:
            return self.volume_identity(volume)["image_id"] == connection["image_id"]
        except DriverError:
            return False

    def disconnect_volume(self, volume: dict, connection: dict) -> None:
        """Nothing to undo: a connection is the image's name and id."""

    def open_connection(self, connection: dict, writable: bool) -> BinaryIO:
        ioctx = self.client.ioctx(connection["pool"])
        if writable:
            # A write to a full pool (at its quota, or the cluster full) fails at once
            # with EDQUOT (ENOSPC) instead of waiting for the OSD operation timeout.
            ioctx.set_osdmap_full_try()
        try:
            image = self._image(ioctx, connection["image"], read_only=not writable)
            if image.id() != connection["image_id"]:
                image.close()
                raise DriverError(f"image {connection['pool']}/{connection['image']} was "
                                  f"replaced since it was connected")
        except BaseException:
            ioctx.close()
            raise
        return RBDImageIO(ioctx, image, writable, f"{connection['pool']}/{connection['image']}",
                          pool_gone=lambda: self.client.pool_deleted(connection["pool"]))

    # -- driver-assisted: Ceph's live migration to another pool --------------
    def move_target(self, pool: str) -> str | None:
        return self.location()

    def can_migrate_within_backend(self, volume: dict, dest_pool: str) -> bool:
        return self.migrations.can_move(volume, dest_pool)

    def migrate_within_backend(self, volume: dict, dest_pool: str) -> None:
        self.migrations.start(volume, dest_pool)

    def get_migration_progress(self, volume: dict) -> tuple[int, int] | None:
        return self.migrations.progress(volume)

    def complete_move(self, volume: dict, dest_pool: str) -> None:
        self.migrations.commit(volume, dest_pool)

    def abort_move(self, volume: dict) -> bool:
        return self.migrations.abort(volume)

    def volume_pool(self, volume: dict, target: str | None = None) -> str:
        return self.migrations.where(volume, target)

    def moved_within_backend(self, volume: dict, pool: str) -> dict:
        fsid, rados_pool = self.migrations.parse_target(pool)
        return {"provider_location": f"rbd://{fsid}/{rados_pool}/{self.image_name(volume)}"}
