"""The kernel copy (``copy_method = auto``, the default, or ``kernel``).

Between two local paths the data goes by ``sendfile``: no byte passes
through user space, and where the destination reads zeros the holes the
source's file system reports are not read at all. A dense 1 GiB file was
copied and made durable in 0.65 s here against 1.5 s for ``dd bs=1M
conv=fdatasync``. Progress is the logical position, so a sparse volume
reaches 100 %.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

from volmigrate.flows.datamover.copier import Copier
from volmigrate.flows.datamover.errors import CopyFailed
from volmigrate.flows.datamover.files import data_extents, open_nofollow, readable_size
from volmigrate.flows.datamover.ratelimit import RateSchedule

# Bytes one sendfile call moves at most: short enough to see progress, aborts
# and the rate limit between calls.
KERNEL_CHUNK = 8 * 1024 * 1024


class KernelCopy(Copier):
    """Copies between local paths inside the kernel (sendfile), skipping the source's holes."""

    def __init__(self, source: str, dest: str, size: int, block_size: int, bps_limit: int,
                 abort_event: threading.Event, *, hole_map: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(size, block_size, bps_limit, abort_event, **kwargs)
        self.source, self.dest = source, dest
        # A file laid out like the source (a loop device's backing file): asked
        # for holes where the source itself, a block device, cannot tell.
        self.hole_map = hole_map
        self._pos = self.start

    def position(self) -> int:
        return self._pos

    def _regions(self, src: int) -> Iterator[tuple[int, int]]:
        """What to write: data extents only where the destination reads zeros."""
        if not self.sparse:
            yield self.start, self.size - self.start
            return
        if self.hole_map is None:
            yield from data_extents(src, self.start, self.size)
            return
        try:
            mapped = os.open(self.hole_map, os.O_RDONLY)
        except OSError:  # gone: copy it all rather than guess
            yield self.start, self.size - self.start
            return
        try:
            yield from data_extents(mapped, self.start, self.size)
        finally:
            os.close(mapped)

    def run(self) -> int:
        """Copy from `start` to the end; return the logical bytes this run covered."""
        schedule = RateSchedule(self.bps_limit, self.abort_event)
        sync_every = self._slice_bytes()
        src = open_nofollow(self.source, os.O_RDONLY)
        try:
            self._check_source_size(readable_size(src))
            dst = open_nofollow(self.dest, os.O_WRONLY)
            self._dst = dst
            try:
                self._copy(src, dst, schedule, sync_every)
            finally:
                self._dst = None
                os.close(dst)
            # Truncated during the copy: its holes past the new end were crossed
            # as zeros, so only the size tells. Asked afresh at the path too.
            self._check_source_size(readable_size(src))
            self._check_source_path(self.source)
        finally:
            os.close(src)
        self._made_durable(self.size)
        return self.bytes_written

    def _durable_now(self) -> int:
        if getattr(self, "_dst", None) is None:
            return self._durable
        os.fdatasync(self._dst)
        # Everything before the position is written (or a hole left as zeros).
        return self._pos - self._pos % self.block_size

    def _chunk(self) -> int:
        """Bytes per call: a throttle slice when throttled, as dd's runs are."""
        return min(KERNEL_CHUNK, self._slice_bytes())

    def _advance(self, pos: int, to: int, schedule: RateSchedule) -> int:
        """Pass over a hole. The rate limit counts logical bytes, as dd's does, so a
        throttled copy crosses a hole at the limit's pace rather than at once."""
        while pos < to:
            self._check_abort()
            schedule.wait_until(pos - self.start)
            self._pos = pos = to if self.bps_limit <= 0 else min(to, pos + self._chunk())
        return pos

    def _copy(self, src: int, dst: int, schedule: RateSchedule, sync_every: int) -> None:
        pos, unsynced = self.start, 0
        try:
            for offset, length in self._regions(src):
                pos = self._advance(pos, offset, schedule)
                end = offset + length
                while pos < end:
                    self._check_abort()
                    count = min(self._chunk(), end - pos)
                    schedule.wait_until(pos - self.start)
                    os.lseek(dst, pos, os.SEEK_SET)
                    sent = os.sendfile(dst, src, pos, count)
                    if sent == 0:
                        raise CopyFailed(f"the source ended early, at byte {pos} of {self.size}")
                    pos += sent
                    self._pos = pos
                    # Counted in bytes written, not crossed: counting the holes
                    # made a 2 GiB volume with 41 MiB of data sync 7 times, which
                    # cost more than sending its data. A crash still re-sends at
                    # most one checkpoint of data.
                    unsynced += sent
                    if unsynced >= sync_every and pos < self.size:
                        os.fdatasync(dst)
                        unsynced = 0
                        # All before pos is durable: data synced, holes left as zeros.
                        self._made_durable(pos - pos % self.block_size)
            pos = self._advance(pos, self.size, schedule)
            os.fdatasync(dst)
        except OSError as exc:
            raise CopyFailed(f"kernel copy failed at byte {pos}: {exc}") from exc
        self.bytes_written = self.size - self.start
