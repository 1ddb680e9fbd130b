"""The copy by file I/O, for a backend that gives only a file-like object.

Progress is the destination's file position against the size. A stream that
is not a real file is made durable by its own ``flush()``, all it offers.
Where the destination reads zeros (a new thin volume), only the source's
data regions are read and written: a sparse file's holes, an RBD image's
objects never written (on a cluster, reading them costs a round trip each).
The rate limit counts logical bytes, as for every copy method.

A handle may ask for larger blocks (``preferred_block_size``: an RBD
image's object size, so that each write is one whole object) and be told
the reads to come (``read_ahead``: an RBD image then keeps several reads in
flight); a source with a descriptor (a block
device) is read with the kernel's sequential read-ahead. Blocks of data
with no zero page are written as read, without a page-by-page scan or a
copy. Checkpoints stay whole multiples of the configured block size, so a
resumed copy starts where any copy method would.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

from volmigrate.flows.datamover.copier import SPARSE_GRAIN, Copier
from volmigrate.flows.datamover.errors import CopyFailed
from volmigrate.flows.datamover.files import handle_extents
from volmigrate.flows.datamover.ratelimit import RateSchedule


# Largest block a handle's preference may make a copy read at once.
MAX_PREFERRED_BLOCK = 64 * 1024 * 1024


def _zero_pages(chunk: bytes, zeros: bytes) -> Iterator[int]:
    """Offsets in `chunk` of its pages (SPARSE_GRAIN from its start) that are all zeros.

    Only pages whose first byte is zero are compared (one strided slice finds
    them): scanning every page of a block of data cost as much CPU as the
    cluster's checksums of it.
    """
    firsts = chunk[::SPARSE_GRAIN]
    view = memoryview(chunk)
    index = firsts.find(0)
    while index >= 0:
        start = index * SPARSE_GRAIN
        end = min(start + SPARSE_GRAIN, len(chunk))
        if view[start:end] == zeros[:end - start]:
            yield start
        index = firsts.find(0, index + 1)


class FileCopy(Copier):
    """Copies `size` bytes between two file-like objects (position vs size progress)."""

    def __init__(self, source: BinaryIO, dest: BinaryIO, size: int, block_size: int,
                 bps_limit: int, abort_event: threading.Event, **kwargs: Any) -> None:
        super().__init__(size, block_size, bps_limit, abort_event, **kwargs)
        self.source, self.dest = source, dest
        self._pos = self.start

    def position(self) -> int:
        return self._pos

    def _unit(self) -> int:
        """Bytes per read: the block size, or the larger size a handle prefers when that
        is a whole number of blocks (an RBD image's object: 4 MiB, 4 blocks of 1 MiB).

        Throttled to less than that per slice, the copy keeps the block size,
        so that it is paced as finely as the other copy methods.
        """
        unit = self.block_size
        for handle in (self.source, self.dest):
            size = getattr(handle, "preferred_block_size", 0)
            if (isinstance(size, int) and unit < size <= MAX_PREFERRED_BLOCK
                    and size % self.block_size == 0):
                unit = size
        if self.bps_limit > 0 and self._slice_bytes() < unit:
            return self.block_size
        return unit

    def _reads(self, regions: list[tuple[int, int]], unit: int) -> Iterator[tuple[int, int]]:
        """(offset, length) of each read of the copy, in order: unit-aligned blocks."""
        pos = self.start
        for offset, length in regions:
            pos = max(pos, offset)
            end = offset + length
            while pos < end:
                n = min(unit - pos % unit, end - pos)
                yield pos, n
                pos += n

    def _advise_sequential(self) -> None:
        """A source with a descriptor (a block device) gets the kernel's larger read-ahead."""
        try:
            os.posix_fadvise(self.source.fileno(), self.start, 0, os.POSIX_FADV_SEQUENTIAL)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass  # only a hint

    def _write_data_pages(self, chunk: bytes, zeros: bytes) -> None:
        if chunk == zeros[:len(chunk)]:
            self.dest.seek(len(chunk), os.SEEK_CUR)
            return
        pos = 0
        for start in _zero_pages(chunk, zeros):
            if start > pos:
                self.dest.write(chunk[pos:start])
            end = min(start + SPARSE_GRAIN, len(chunk))
            self.dest.seek(end - start, os.SEEK_CUR)
            pos = end
        if pos == 0:
            self.dest.write(chunk)  # no zero page: as read, not copied
        elif pos < len(chunk):
            self.dest.write(chunk[pos:])

    def _durable_now(self) -> int:
        copied = getattr(self, "_copied", self._durable)
        if copied <= self._durable:
            return self._durable
        self._sync()
        return copied - copied % self.block_size

    def _sync(self) -> None:
        self.dest.flush()
        try:
            fd = self.dest.fileno()
        except (OSError, ValueError):
            return  # not a real file: flush() is all it offers
        os.fsync(fd)

    def run(self) -> int:
        """Copy from `start` to the end; return the bytes this run wrote (or skipped as zeros)."""
        schedule = RateSchedule(self.bps_limit, self.abort_event)
        unit = self._unit()
        zeros = bytes(unit)
        sync_every = self._slice_bytes()
        self._check_source_handle()
        regions = None
        if self.sparse:
            try:
                regions = handle_extents(self.source, self.start, self.size)
            except OSError as exc:
                raise CopyFailed(f"cannot ask the source where its data is: {exc}") from exc
        if regions is None:
            regions = [(self.start, self.size - self.start)]
        read_ahead = getattr(self.source, "read_ahead", None)
        if callable(read_ahead) and self.bps_limit <= 0:
            # Unthrottled only: a throttled copy reads each block when it is due.
            read_ahead(self._reads(regions, unit))
        else:
            self._advise_sequential()
        pos = synced = self.start
        placed = False
        try:
            for offset, length in self._reads(regions, unit):
                if offset != pos or not placed:
                    self.source.seek(offset)
                    self.dest.seek(offset)
                    pos, placed = offset, True
                self._check_abort()
                schedule.wait_until(pos - self.start)
                chunk = self._read(length)
                if not chunk:
                    raise CopyFailed(f"the source ended early, at byte {pos} of "
                                     f"{self.size}")
                if self.sparse:
                    # A fresh destination already reads as zeros: write only the
                    # pages that hold data, so it is no more allocated than the source.
                    self._write_data_pages(chunk, zeros)
                else:
                    self.dest.write(chunk)
                pos += len(chunk)
                self._copied = pos
                self._pos = self.dest.tell()
                self.bytes_written += len(chunk)
                if len(chunk) < length:
                    raise CopyFailed(f"the source ended early, at byte {pos} of {self.size}")
                if pos - synced >= sync_every and pos < self.size:
                    self._sync()
                    synced = pos
                    # Whole blocks, where a resumed copy starts (a data region of
                    # the source may end inside a block).
                    if pos - pos % self.block_size > self._durable:
                        self._made_durable(pos - pos % self.block_size)
            self._sync()
            self._check_source_handle()
            self._copied = self._pos = self.size
            self.bytes_written = self.size - self.start  # holes skipped count as copied
            self._made_durable(self.size)
        except OSError as exc:
            raise CopyFailed(f"file copy failed at byte {pos}: {exc}") from exc
        return self.bytes_written

    def _read(self, length: int) -> bytes:
        """`length` bytes from the source, fewer only where it ends."""
        chunk = self.source.read(length)
        if not chunk:
            return b""
        if len(chunk) < length:  # a short read that is not the end
            parts = [chunk]
            got = len(chunk)
            while got < length:
                more = self.source.read(length - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            chunk = b"".join(parts)
        return chunk

    def _check_source_handle(self) -> None:
        try:
            held = self.source.seek(0, os.SEEK_END)
        except (OSError, ValueError, io.UnsupportedOperation):
            return  # a stream that cannot tell: its reads still stop at its end
        self._check_source_size(held)
