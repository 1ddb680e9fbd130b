"""A file-like handle on an RBD image, for the file-I/O copy and its verification.

librbd gives no path a copy could open (short of mapping the image through
the kernel), only calls on an ``rbd.Image``. This handle makes those calls
look like a seekable binary file, and adds what a copy needs from a thin
image on a cluster:

- ``data_extents()`` asks librbd which objects exist (``diff_iterate`` with
  whole-object granularity, served from the object map), so a copy neither
  reads nor writes what was never written: on a real cluster every read of
  an unallocated object is still a round trip to an OSD;
- reads can be planned (``read_ahead()``): the reads a copy will make are
  issued ahead of it (``aio_read``, a bounded number and size in flight),
  so the cluster serves the next objects while this one is written; each
  synchronous read would otherwise wait a round trip with nothing else in
  flight (profiled here: 1 MiB synchronous reads were 3 s of a 5.7 s copy
  of 1 GiB between two pools);
- writes are asynchronous (``aio_write``) with a bounded number in flight,
  so the cluster works on several objects while the copy reads the next
  block; ``flush()`` waits for all of them and for librbd's own cache, and
  is what a durable checkpoint calls;
- ``preferred_block_size`` is the image's object size: a copy that
  follows it writes whole objects, one OSD operation each where 1 MiB
  blocks take four, as Ceph's own tools do (measured here on a memstore
  OSD, 1 GiB of aio writes: 2.76 s in 4 MiB, 2.97 s in 1 MiB).
"""

from __future__ import annotations

import errno
import io
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from volmigrate.drivers.rbd_client import bindings

# Writes in flight at most, and bytes they may hold (a copy block is 1 to 4 MiB).
MAX_WRITES_IN_FLIGHT = 16
MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024
# Planned reads in flight at most, and bytes they may hold.
MAX_READS_AHEAD = 8
MAX_BYTES_AHEAD = 32 * 1024 * 1024


class _Read:
    """One read issued ahead (``aio_read``); its data once ``done`` is set."""

    __slots__ = ("offset", "length", "done", "data", "ret")

    def __init__(self, offset: int, length: int) -> None:
        self.offset, self.length = offset, length
        self.done = threading.Event()
        self.data: bytes | None = None
        self.ret = 0

    def complete(self, completion, data) -> None:  # librbd's thread
        self.ret, self.data = completion.get_return_value(), data
        self.done.set()


class RBDImageIO(io.RawIOBase):
    """Seekable binary I/O on one image; closes the image and its I/O context."""

    def __init__(self, ioctx, image, writable: bool, name: str,
                 pool_gone: Callable[[], bool] = lambda: False) -> None:
        super().__init__()
        self._ioctx, self._image, self._writable, self.name = ioctx, image, writable, name
        self._pool_gone = pool_gone
        self.size = image.size()
        self._pos = 0
        self._cond = threading.Condition()
        self._in_flight = 0
        self._bytes_in_flight = 0
        self._error: str | None = None
        self._error_code = errno.EIO
        self._released = False
        # The planned reads (read_ahead) not issued yet, the next of them, and
        # those issued, oldest first.
        self._plan: Iterator[tuple[int, int]] | None = None
        self._next: tuple[int, int] | None = None
        self._ahead: deque[_Read] = deque()
        self._bytes_ahead = 0
        try:
            self.preferred_block_size = int(image.stat()["obj_size"])
        except (bindings()[1].Error, KeyError, TypeError, ValueError):
            self.preferred_block_size = 0

    def _failure(self, code: int | None, text: str) -> OSError:
        """An I/O error; librbd says "permission" (EPERM) or ENOENT when the pool itself
        was deleted, which is then said instead of leaving an administrator to check keys."""
        if code in (errno.EPERM, errno.ENOENT) and self._pool_gone():
            text = f"{text}: its pool was deleted"
        return OSError(code or errno.EIO, text)

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
        if self._ahead:
            head = self._ahead[0]
            if head.offset == self._pos and head.length == end - self._pos:
                self._ahead.popleft()
                self._bytes_ahead -= head.length
                self._issue()  # keep the pipeline full while this one is waited for
                head.done.wait()
                if head.ret < 0:
                    raise self._failure(-head.ret, f"reading {self.name} at byte "
                                                   f"{head.offset}: {os.strerror(-head.ret)}")
                data = head.data or b""
                self._pos += len(data)
                return data
            self._drop_reads()  # the reader went off the plan: read as asked
        try:
            data = self._image.read(self._pos, end - self._pos)
        except bindings()[1].Error as exc:
            raise self._failure(getattr(exc, "errno", None),
                                f"reading {self.name} at byte {self._pos}: {exc}") from None
        self._pos += len(data)
        return data

    def read_ahead(self, reads: Iterable[tuple[int, int]]) -> None:
        """Plan the reads to come, in order, as (offset, length): each is issued ahead.

        ``read()`` at a planned offset and length takes the planned read's data;
        any other read drops the plan (what was read ahead is discarded) and
        reads synchronously, so a plan that is wrong costs time, never data.
        """
        self._drop_reads()
        self._plan = iter(reads)
        self._issue()

    def _issue(self) -> None:
        while self._plan is not None and len(self._ahead) < MAX_READS_AHEAD:
            if self._next is None:
                self._next = next(self._plan, None)
                if self._next is None:
                    self._plan = None
                    return
            offset, length = self._next
            length = min(length, self.size - offset)
            if length <= 0 or offset < 0:
                self._next = None
                continue
            if self._ahead and self._bytes_ahead + length > MAX_BYTES_AHEAD:
                return
            self._next = None
            read = _Read(offset, length)
            try:
                self._image.aio_read(offset, length, read.complete)
            except bindings()[1].Error:
                self._plan = None  # the synchronous read at that offset reports the error
                return
            self._ahead.append(read)
            self._bytes_ahead += length

    def _drop_reads(self) -> None:
        """Forget the plan; wait for the reads issued (librbd writes into their buffers)."""
        self._plan = self._next = None
        while self._ahead:
            self._ahead.popleft().done.wait()
        self._bytes_ahead = 0

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
        # librbd keeps the buffer until the write completes: a view is copied, bytes
        # (what a copy writes, block after block) are taken as they are.
        payload = bytes(data)
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
            raise self._failure(getattr(exc, "errno", None),
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
                self._error_code = -ret
            self._cond.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._failure(self._error_code, self._error)

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
            raise self._failure(getattr(exc, "errno", None),
                                f"flushing {self.name}: {exc}") from None

    def close(self) -> None:
        if self.closed or self._released:
            return
        try:
            self._drop_reads()
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
            raise self._failure(getattr(exc, "errno", None),
                                f"listing the allocated extents of {self.name}: {exc}") from None
        return iter([(max(a, start), min(b, end) - max(a, start)) for a, b in found])
