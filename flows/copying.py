"""The data copies: dd between local paths, and file I/O between file-like objects.

Both report their position for the progress monitor (dd through
``/proc/<pid>/fdinfo/1``, as the spec says; file I/O through the file
pointer), honour ``volume_copy_bps_limit`` and stop promptly on abort.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import BinaryIO

from oslo_log import log as logging

from volmigrate.flows.exceptions import CopyFailed, MigrationAborted

LOG = logging.getLogger(__name__)

# How long one throttled dd run lasts; the shorter, the closer the achieved
# rate is to the limit, the more dd processes are started.
THROTTLE_SLICE_SECONDS = 0.1
ABORT_POLL_SECONDS = 0.05


def read_fdinfo_pos(pid: int, fd: int = 1) -> int | None:
    """The file position of `fd` in process `pid`, or None once it has exited."""
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as f:
            for line in f:
                if line.startswith("pos:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


class RateSchedule:
    """Paces a copy so that `offset` bytes are not passed before offset/limit seconds."""

    def __init__(self, bps_limit: int, abort_event: threading.Event) -> None:
        self.bps_limit = bps_limit
        self.abort_event = abort_event
        self.start = time.monotonic()

    def wait_until(self, offset: int) -> None:
        if self.bps_limit <= 0:
            return
        due = self.start + offset / self.bps_limit
        while True:
            delay = due - time.monotonic()
            if delay <= 0 or self.abort_event.wait(min(delay, ABORT_POLL_SECONDS)):
                return


class DdCopy:
    """Copies `size` bytes from one local path to another with dd."""

    def __init__(self, source: str, dest: str, size: int, block_size: int,
                 bps_limit: int, abort_event: threading.Event,
                 abort_reason=lambda: "migration aborted", sparse: bool = True) -> None:
        self.source, self.dest, self.size = source, dest, size
        self.block_size = block_size
        self.bps_limit = bps_limit
        self.abort_event = abort_event
        self.abort_reason = abort_reason
        self.sparse = sparse
        self._pid: int | None = None
        self._committed = 0  # bytes done by finished dd runs

    def position(self) -> int:
        pid = self._pid
        if pid is not None:
            pos = read_fdinfo_pos(pid)
            if pos is not None:
                return min(max(pos, self._committed), self.size)
        return self._committed

    def _args(self, first_block: int, count: int | None) -> list[str]:
        conv = ["notrunc", "fdatasync"]
        if self.sparse:
            # The destination is freshly created and reads as zeros, so dd may
            # seek over zero blocks instead of writing them: it stays sparse.
            conv.append("sparse")
        args = ["dd", f"if={self.source}", f"of={self.dest}", f"bs={self.block_size}",
                f"conv={','.join(conv)}", "status=none"]
        if first_block:
            args += [f"skip={first_block}", f"seek={first_block}"]
        if count is not None:
            args.append(f"count={count}")
        return args

    def _run_dd(self, args: list[str]) -> None:
        LOG.debug("Running %s", args)
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        self._pid = proc.pid
        try:
            while True:
                try:
                    proc.wait(timeout=ABORT_POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if self.abort_event.is_set():
                        proc.kill()
                        proc.wait()
                        raise MigrationAborted(self.abort_reason()) from None
            stderr = proc.stderr.read().decode(errors="replace").strip()
        finally:
            self._pid = None
            proc.stderr.close()
        if proc.returncode != 0:
            raise CopyFailed(f"dd exited with status {proc.returncode}: {stderr}")

    def run(self) -> int:
        """Copy everything; return the bytes copied."""
        if self.abort_event.is_set():
            raise MigrationAborted(self.abort_reason())
        blocks = -(-self.size // self.block_size)
        if self.bps_limit <= 0:
            self._run_dd(self._args(0, None))
            self._committed = self.size
            return self.size
        schedule = RateSchedule(self.bps_limit, self.abort_event)
        per_run = max(1, int(self.bps_limit * THROTTLE_SLICE_SECONDS) // self.block_size)
        block = 0
        while block < blocks:
            schedule.wait_until(block * self.block_size)
            if self.abort_event.is_set():
                raise MigrationAborted(self.abort_reason())
            count = min(per_run, blocks - block)
            self._run_dd(self._args(block, count))
            block += count
            self._committed = min(block * self.block_size, self.size)
        return self.size


class FileCopy:
    """Copies `size` bytes between two file-like objects (position vs size progress)."""

    def __init__(self, source: BinaryIO, dest: BinaryIO, size: int, chunk_size: int,
                 bps_limit: int, abort_event: threading.Event,
                 abort_reason=lambda: "migration aborted", sparse: bool = True) -> None:
        self.source, self.dest, self.size = source, dest, size
        self.chunk_size = chunk_size
        self.bps_limit = bps_limit
        self.abort_event = abort_event
        self.abort_reason = abort_reason
        self.sparse = sparse
        self._pos = 0

    def position(self) -> int:
        return self._pos

    def _sync(self) -> None:
        self.dest.flush()
        try:
            fd = self.dest.fileno()
        except (OSError, ValueError):
            return  # not a real file: flush() is all it offers
        os.fsync(fd)

    def run(self) -> int:
        schedule = RateSchedule(self.bps_limit, self.abort_event)
        zeros = bytes(self.chunk_size)
        # Throttled, sync once per slice like the dd runs do, so the final
        # sync does not add a burst of unpaced time at the end.
        sync_every = (max(self.chunk_size, int(self.bps_limit * THROTTLE_SLICE_SECONDS))
                      if self.bps_limit > 0 else 0)
        synced = 0
        self.source.seek(0)
        self.dest.seek(0)
        pos = 0
        try:
            while pos < self.size:
                if self.abort_event.is_set():
                    raise MigrationAborted(self.abort_reason())
                schedule.wait_until(pos)
                chunk = self.source.read(min(self.chunk_size, self.size - pos))
                if not chunk:
                    raise CopyFailed(f"source ended at byte {pos} of {self.size}")
                if self.sparse and chunk == zeros[:len(chunk)]:
                    # A fresh destination already reads as zeros there.
                    self.dest.seek(len(chunk), os.SEEK_CUR)
                else:
                    self.dest.write(chunk)
                pos += len(chunk)
                self._pos = self.dest.tell()
                if sync_every and pos - synced >= sync_every:
                    self._sync()
                    synced = pos
            self._sync()
        except OSError as exc:
            raise CopyFailed(f"file copy failed at byte {pos}: {exc}") from exc
        return pos
