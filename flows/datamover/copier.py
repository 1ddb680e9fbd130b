"""What every copy method shares: pacing, abort, durable checkpoints, source checks.

A copy makes the destination durable at every checkpoint and reports it
(``on_checkpoint``), so that a copy interrupted by a crash is run again from
the last checkpoint (``start``) instead of byte 0. It reads the source
exactly: a source shorter than the volume fails the copy rather than being
zero-padded into a copy that looks good.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from volmigrate.flows.datamover.errors import CopyAborted, CopyParked, CopyFailed
from volmigrate.flows.datamover.files import open_nofollow, readable_size
from volmigrate.flows.datamover.ratelimit import THROTTLE_SLICE_SECONDS

# Granularity at which sparse copies leave zeros unwritten: a file-system page.
SPARSE_GRAIN = 4096


class Copier:
    """The base of the copy methods; a subclass provides ``run()`` and ``position()``."""

    def __init__(self, size: int, block_size: int, bps_limit: int,
                 abort_event: threading.Event, *, start: int = 0,
                 checkpoint_bytes: int = 0,
                 on_checkpoint: Callable[[int], None] | None = None,
                 abort_reason: Callable[[], str] = lambda: "migration aborted",
                 parking: Callable[[], bool] = lambda: False,
                 sparse: bool = True) -> None:
        if start % block_size and start != size:
            raise ValueError(f"resume offset {start} is not a multiple of {block_size}")
        self.size, self.block_size, self.bps_limit = size, block_size, bps_limit
        self.abort_event, self.abort_reason = abort_event, abort_reason
        # True when the abort event means "stop for a restart", not "abort".
        self.parking = parking
        self.start = start
        # Bytes between two durable checkpoints (whole blocks, at least one).
        self.checkpoint_bytes = max(block_size, checkpoint_bytes - checkpoint_bytes % block_size)
        self.on_checkpoint = on_checkpoint
        self.sparse = sparse
        self._durable = start
        #: Bytes this run wrote (or skipped as zeros), as the copier itself counts them.
        self.bytes_written = 0

    def run(self) -> int:
        """Copy from `start` to the end; return the bytes this run wrote."""
        raise NotImplementedError

    def position(self) -> int:
        """How far the copy has got, for the progress monitor (it never goes back)."""
        raise NotImplementedError

    def durable(self) -> int:
        """Bytes known to be on stable storage at the destination."""
        return self._durable

    def _made_durable(self, offset: int) -> None:
        # Every durable point is recorded, so a crash re-copies at most one
        # synced run: a checkpoint's worth, or a throttle slice.
        self._durable = offset
        if self.on_checkpoint:
            self.on_checkpoint(offset)

    def _check_abort(self) -> None:
        if self.abort_event.is_set():
            if self.parking():
                offset = self._durable_now()
                if offset > self._durable:
                    self._made_durable(offset)
                raise CopyParked(self._durable)
            raise CopyAborted(self.abort_reason())

    def _durable_now(self) -> int:
        """Make what was written durable now; return the whole-block offset it reaches.

        The base knows of no unsynced write (dd makes each run durable when it
        exits); copy methods that write through their own handle override it.
        """
        return self._durable

    def _check_source_size(self, held: int) -> None:
        """A source shorter than the volume would be zero-padded into a "good" copy."""
        if held < self.size:
            raise CopyFailed(f"the source ended early: it holds {held} bytes, the volume "
                             f"is {self.size} bytes (shorter than its volume, or truncated "
                             f"during the copy); the copy is not the volume's data")

    def _check_source_path(self, path: str) -> None:
        """Check the size of the source found afresh at its path (it may have been
        truncated, or replaced, since a copier opened it)."""
        fd = open_nofollow(path, os.O_RDONLY)
        try:
            self._check_source_size(readable_size(fd))
        finally:
            os.close(fd)

    def _slice_bytes(self) -> int:
        """Bytes per synced run: a checkpoint, or less when throttled."""
        if self.bps_limit <= 0:
            return self.checkpoint_bytes
        slice_bytes = int(self.bps_limit * THROTTLE_SLICE_SECONDS)
        slice_bytes -= slice_bytes % self.block_size
        return max(self.block_size, min(slice_bytes, self.checkpoint_bytes))
