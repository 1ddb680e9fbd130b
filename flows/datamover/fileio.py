"""The copy by file I/O, for a backend that gives only a file-like object.

Progress is the destination's file position against the size. A stream that
is not a real file is made durable by its own ``flush()``, all it offers.
Where the destination reads zeros (a new thin volume), only the source's
data regions are read and written: a sparse file's holes, an RBD image's
objects never written (on a cluster, reading them costs a round trip each).
The rate limit counts logical bytes, as for every copy method.
"""

from __future__ import annotations

import io
import os
import threading
from typing import Any, BinaryIO

from volmigrate.flows.datamover.copier import SPARSE_GRAIN, Copier
from volmigrate.flows.datamover.errors import CopyFailed
from volmigrate.flows.datamover.files import handle_extents
from volmigrate.flows.datamover.ratelimit import RateSchedule


class FileCopy(Copier):
    """Copies `size` bytes between two file-like objects (position vs size progress)."""

    def __init__(self, source: BinaryIO, dest: BinaryIO, size: int, block_size: int,
                 bps_limit: int, abort_event: threading.Event, **kwargs: Any) -> None:
        super().__init__(size, block_size, bps_limit, abort_event, **kwargs)
        self.source, self.dest = source, dest
        self._pos = self.start

    def position(self) -> int:
        return self._pos

    def _write_data_pages(self, chunk: bytes, zeros: bytes) -> None:
        if chunk == zeros[:len(chunk)]:
            self.dest.seek(len(chunk), os.SEEK_CUR)
            return
        view = memoryview(chunk)
        page = 0
        while page < len(chunk):
            end = min(page + SPARSE_GRAIN, len(chunk))
            if view[page:end] == zeros[:end - page]:
                self.dest.seek(end - page, os.SEEK_CUR)
            else:
                run = end
                while run < len(chunk) and view[run:min(run + SPARSE_GRAIN, len(chunk))] \
                        != zeros[:min(SPARSE_GRAIN, len(chunk) - run)]:
                    run = min(run + SPARSE_GRAIN, len(chunk))
                self.dest.write(view[page:run])
                end = run
            page = end

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
        zeros = bytes(self.block_size)
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
        pos = synced = self.start
        try:
            for offset, length in regions:
                pos = max(pos, offset)
                end = offset + length
                self.source.seek(pos)
                self.dest.seek(pos)
                while pos < end:
                    self._check_abort()
                    schedule.wait_until(pos - self.start)
                    chunk = self.source.read(min(self.block_size - pos % self.block_size,
                                                 end - pos))
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
                    if pos - synced >= sync_every and pos < self.size:
                        self._sync()
                        synced = pos
                        self._made_durable(pos)
            self._sync()
            self._check_source_handle()
            self._copied = self._pos = self.size
            self.bytes_written = self.size - self.start  # holes skipped count as copied
            self._made_durable(self.size)
        except OSError as exc:
            raise CopyFailed(f"file copy failed at byte {pos}: {exc}") from exc
        return self.bytes_written

    def _check_source_handle(self) -> None:
        try:
            held = self.source.seek(0, os.SEEK_END)
        except (OSError, ValueError, io.UnsupportedOperation):
            return  # a stream that cannot tell: its reads still stop at its end
        self._check_source_size(held)
