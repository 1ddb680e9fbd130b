"""A file-like handle on an RBD image, for the file-I/O copy and its verification.

librbd gives no path a copy could open (short of mapping the image through
the kernel), only calls on an ``rbd.Image``. This handle makes those calls
look like a seekable binary file, and adds what a copy needs from a thin
image on a cluster:

- ``data_extents()`` asks librbd which objects exist (``diff_iterate`` with
  whole-object granularity, served from the object map), so a copy neither
  reads nor writes what was never written: on a real cluster every read of
  an unallocated object is still a round trip to an OSD;
- writes are asynchronous (``aio_write``) with a bounded number in flight,
  so the cluster works on several objects while the copy reads the next
  block; ``flush()`` waits for all of them and for librbd's own cache, and
  is what a durable checkpoint calls.
"""

from __future__ import annotations

import errno
import io
import os
import threading
from collections.abc import Iterator

from volmigrate.drivers.rbd_client import bindings

# Writes in flight at most, and bytes they may hold (a copy block is 1 to 4 MiB).
MAX_WRITES_IN_FLIGHT = 16
MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024


class RBDImageIO(io.RawIOBase):
    """Seekable binary I/O on one image; closes the image and its I/O context."""

    def __init__(self, ioctx, image, writable: bool, name: str) -> None:
        super().__init__()
        self._ioctx, self._image, self._writable, self.name = ioctx, image, writable, name
        self.size = image.size()
        self._pos = 0
        self._cond = threading.Condition()
        self._in_flight = 0
        self._bytes_in_flight = 0
        self._error: str | None = None
        self._released = False

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
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self._pos = base + offset
        return self._pos

    def fileno(self) -> int:
        raise io.UnsupportedOperation("an RBD image has no file descriptor")

    def read(self, size: int = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        if end <= self._pos:
            return b""
        try:
            data = self._image.read(self._pos, end - self._pos)
        except bindings()[1].Error as exc:
            raise OSError(getattr(exc, "errno", None) or errno.EIO,
                          f"reading {self.name} at byte {self._pos}: {exc}") from None
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[:len(data)] = data
        return len(data)

    def write(self, data) -> int:
        if not self._writable:
            raise io.UnsupportedOperation("image opened read-only")
        length = len(data)
        if self._pos + length > self.size:
            raise OSError(errno.ENOSPC, f"write past the end of {self.name} ({self.size} bytes)")
        payload = bytes(data)  # librbd keeps the buffer until the write completes
        with self._cond:
            self._raise_error()
            while (self._in_flight >= MAX_WRITES_IN_FLIGHT
                   or self._bytes_in_flight + length > MAX_BYTES_IN_FLIGHT) and self._in_flight:
                self._cond.wait()
                self._raise_error()
            self._in_flight += 1
            self._bytes_in_flight += length
        offset = self._pos
        try:
            self._image.aio_write(payload, offset,
                                  lambda completion: self._done(completion, offset, length))
        except bindings()[1].Error as exc:
            with self._cond:
                self._in_flight -= 1
                self._bytes_in_flight -= length
            raise OSError(getattr(exc, "errno", None) or errno.EIO,
                          f"writing {self.name} at byte {offset}: {exc}") from None
        self._pos += length
        return length

    def _done(self, completion, offset: int, length: int) -> None:
        ret = completion.get_return_value()
        with self._cond:
            self._in_flight -= 1
            self._bytes_in_flight -= length
            if ret < 0 and self._error is None:
                self._error = (f"writing {self.name} at byte {offset} failed: "
                               f"{os.strerror(-ret)} (errno {-ret})")
            self._cond.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise OSError(errno.EIO, self._error)

    def flush(self) -> None:
        """Wait for every write so far and make it durable in the cluster."""
        if self.closed or self._released or not self._writable:
            return
        with self._cond:
            while self._in_flight:
                self._cond.wait()
            self._raise_error()
        try:
            self._image.flush()
        except bindings()[1].Error as exc:
            raise OSError(getattr(exc, "errno", None) or errno.EIO,
                          f"flushing {self.name}: {exc}") from None

    def close(self) -> None:
        if self.closed or self._released:
            return
        try:
            if self._writable:
                self.flush()
        finally:
            self._released = True  # IOBase.close() flushes again: nothing left to flush
            try:
                self._image.close()
            finally:
                self._ioctx.close()
                super().close()

    # -- what a copy asks a thin image -------------------------------------
    def data_extents(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """(offset, length) of the allocated objects between start and end, merged."""
        found: list[list[int]] = []

        def collect(offset: int, length: int, exists: bool) -> int:
            if exists:
                if found and found[-1][1] == offset:
                    found[-1][1] = offset + length
                else:
                    found.append([offset, offset + length])
            return 0

        end = min(end, self.size)
        if end <= start:
            return iter(())
        try:
            self._image.diff_iterate(start, end - start, None, collect, include_parent=True,
                                     whole_object=True)
        except bindings()[1].Error as exc:
            raise OSError(getattr(exc, "errno", None) or errno.EIO,
                          f"listing the allocated extents of {self.name}: {exc}") from None
        return iter([(max(a, start), min(b, end) - max(a, start)) for a, b in found])
