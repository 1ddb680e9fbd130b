"""The source of a live migration whose destination is gone, put back.

``rbd migration prepare`` moves the source image to its pool's trash (source
MIGRATION) and links it to the destination; ``abort`` opens the destination
to undo both. When the destination pool or image has been deleted, abort
fails with ENOENT, Ceph 16 offers no other way back (``rbd trash restore``
refuses a MIGRATION entry), and the image is in no listing although every
one of its objects is intact: a volume that is there and cannot be opened.

:func:`restore_source` does for the source what librbd's abort does, with
the same cls_rbd methods: drop the migration record from the image header
(which also clears the migration operation feature), name the image again
(``rbd_id.<name>``, the directory) and take it out of the trash. Each step
accepts that it was done already, so a process killed half way is finished
by the next attempt. What clients wrote after the prepare went to the
destination and is gone with it: the image is put back as it was then.
"""

from __future__ import annotations

import errno
import struct

from volmigrate.drivers.exceptions import DriverError
from volmigrate.drivers.rbd_client import RadosClient, bindings, explain

TRASH, DIRECTORY = "rbd_trash", "rbd_directory"
# How many trash entries are looked at; a pool's trash holds far fewer.
MAX_TRASH_ENTRIES = 100000


def _string(text: str) -> bytes:
    """A std::string in Ceph's encoding (le32 length, bytes), as cls_rbd decodes it."""
    data = text.encode()
    return struct.pack("<I", len(data)) + data


def orphaned_source(client: RadosClient, pool: str, name: str) -> str | None:
    """The id of image `name` waiting in `pool`'s trash as a migration's source, or None.

    (The binding's trash_list fails on a MIGRATION entry with IndexError,
    measured on Ceph 16, so the trash's own omap is read.)
    """
    rados, rbd = bindings()
    ioctx = client.ioctx(pool)
    try:
        with rados.ReadOpCtx() as op:
            entries, _ = ioctx.get_omap_vals(op, "", "id_", MAX_TRASH_ENTRIES)
            ioctx.operate_read_op(op, TRASH)
            ids = [key[len("id_"):] for key, _ in entries]
        for image_id in ids:
            try:
                spec = rbd.RBD().trash_get(ioctx, image_id)
            except rbd.ImageNotFound:
                continue
            if spec["name"] == name and str(spec["source"]).upper() == "MIGRATION":
                return image_id
        return None
    except rados.ObjectNotFound:
        return None  # a pool whose trash was never used
    except (rados.Error, rbd.Error) as exc:
        raise DriverError(f"cannot read the trash of pool {pool}: "
                          f"{explain(exc, client.timeout)}") from None
    finally:
        ioctx.close()


def restore_source(client: RadosClient, pool: str, name: str, image_id: str) -> None:
    """Put image `image_id` back in `pool` as `name`, out of its migration (see above)."""
    rados, rbd = bindings()
    ioctx = client.ioctx(pool)

    def call(oid: str, method: str, data: bytes, done_already: int) -> None:
        try:
            ioctx.execute(oid, "rbd", method, data)
        except rados.Error as exc:
            if getattr(exc, "errno", None) != done_already:
                raise

    try:
        if name in rbd.RBD().list(ioctx):
            with rbd.Image(ioctx, name, read_only=True) as image:
                if image.id() != image_id:
                    raise DriverError(f"image {pool}/{name} exists again (id {image.id()}); "
                                      f"the source of its migration waits in the trash as "
                                      f"id {image_id}")
        call(f"rbd_header.{image_id}", "migration_remove", b"", errno.ENOENT)
        with rados.WriteOpCtx() as op:  # the name's id object, created if it is not there
            op.new(rados.LIBRADOS_CREATE_IDEMPOTENT)
            ioctx.operate_write_op(op, f"rbd_id.{name}")
        call(f"rbd_id.{name}", "set_id", _string(image_id), errno.EEXIST)
        call(DIRECTORY, "dir_add_image", _string(name) + _string(image_id), errno.EEXIST)
        call(TRASH, "trash_remove", _string(image_id), errno.ENOENT)
        with rbd.Image(ioctx, name, read_only=True) as image:  # it opens as itself again
            if image.id() != image_id:
                raise DriverError(f"image {pool}/{name} opens as id {image.id()}, not "
                                  f"{image_id}")
    except (rados.Error, rbd.Error) as exc:
        raise DriverError(f"cannot put the source of the rbd migration of {name} back in "
                          f"pool {pool}: {explain(exc, client.timeout)}") from None
    finally:
        ioctx.close()
