"""Opening a volume's data and asking it its size and its holes.

A backend's volume is a regular file or a block device reached by path; a
link put in its place must not make a copy read or write data outside the
backend, and a source shorter than its volume must not pass for the volume.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

from volmigrate.flows.datamover.errors import CopyFailed


def open_nofollow(path: str, flags: int) -> int:
    """A descriptor on a volume's path; a symbolic link there is refused, not followed."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CopyFailed(f"{path} is a symbolic link; volmigrate does not follow links "
                             f"out of a backend") from None
        raise CopyFailed(f"cannot open {path}: {exc.strerror}") from exc


def readable_size(fd: int) -> int:
    """Bytes a file or block device holds (SEEK_END works for both, st_size does not)."""
    return os.lseek(fd, 0, os.SEEK_END)


def data_extents(fd: int, start: int, end: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of the data regions of a file between start and end.

    SEEK_DATA/SEEK_HOLE ask the file system where the holes are; where it
    cannot tell (a block device, an old file system) the whole range is data.
    """
    offset = start
    while offset < end:
        try:
            data = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nothing but a hole up to the end
                return
            yield offset, end - offset  # holes unknown: all of it is data
            return
        if data >= end:
            return
        try:
            hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
        except OSError:
            hole = end
        yield data, hole - data
        offset = hole


def handle_extents(handle, start: int, end: int) -> list[tuple[int, int]] | None:
    """The data regions of an open volume between start and end; None when it cannot tell.

    A handle that knows its own allocation (an RBD image: ``data_extents``)
    says so; a regular file is asked by its descriptor; anything else cannot
    tell, and all of it is data.
    """
    ask = getattr(handle, "data_extents", None)
    if callable(ask):
        return list(ask(start, end))
    try:
        fd = handle.fileno()
    except (OSError, ValueError, AttributeError):
        return None
    return list(data_extents(fd, start, end))
