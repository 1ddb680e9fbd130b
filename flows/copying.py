"""The data copies: dd between local paths, and file I/O between file-like objects.

Both report their position for the progress monitor (dd through
``/proc/<pid>/fdinfo/1``, as the spec says; file I/O through the file
pointer), honour ``volume_copy_bps_limit``, stop promptly on abort, and make
the destination durable every checkpoint so that a copy interrupted by a
crash resumes from the last checkpoint (``start``) instead of byte 0.
"""

from __future__ import annotations

import errno
import io
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

from oslo_log import log as logging

from volmigrate.flows.exceptions import CopyFailed, MigrationAborted

LOG = logging.getLogger(__name__)

# How long one throttled dd run lasts; the shorter, the closer the achieved
# rate is to the limit, the more dd processes are started.
THROTTLE_SLICE_SECONDS = 0.1
# Granularity at which sparse copies leave zeros unwritten: a file-system page.
SPARSE_GRAIN = 4096
ABORT_POLL_SECONDS = 0.05

# dd's messages in the C locale, so that its byte count can be read.
DD_ENV = dict(os.environ, LC_ALL="C")
_DD_BYTES_RE = re.compile(r"^(\d+) bytes", re.MULTILINE)


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
    """Bytes a file or block device holds (SEEK_END works for both)."""
    return os.lseek(fd, 0, os.SEEK_END)


class RateSchedule:
    """Paces a copy so that `done` bytes are not passed before done/limit seconds."""

    def __init__(self, bps_limit: int, abort_event: threading.Event) -> None:
        self.bps_limit = bps_limit
        self.abort_event = abort_event
        self.start = time.monotonic()

    def wait_until(self, done: int) -> None:
        if self.bps_limit <= 0:
            return
        due = self.start + done / self.bps_limit
        while True:
            delay = due - time.monotonic()
            if delay <= 0 or self.abort_event.wait(min(delay, ABORT_POLL_SECONDS)):
                return


class _Copy:
    """What both copies share: pacing, abort, and durable checkpoints."""

    def __init__(self, size: int, block_size: int, bps_limit: int,
                 abort_event: threading.Event, *, start: int = 0,
                 checkpoint_bytes: int = 0,
                 on_checkpoint: Callable[[int], None] | None = None,
                 abort_reason: Callable[[], str] = lambda: "migration aborted",
                 sparse: bool = True) -> None:
        if start % block_size and start != size:
            raise ValueError(f"resume offset {start} is not a multiple of {block_size}")
        self.size, self.block_size, self.bps_limit = size, block_size, bps_limit
        self.abort_event, self.abort_reason = abort_event, abort_reason
        self.start = start
        # Bytes between two durable checkpoints (whole blocks, at least one).
        self.checkpoint_bytes = max(block_size, checkpoint_bytes - checkpoint_bytes % block_size)
        self.on_checkpoint = on_checkpoint
        self.sparse = sparse
        self._durable = start
        #: Bytes this run wrote (or skipped as zeros), as the copier itself counts them.
        self.bytes_written = 0

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
            raise MigrationAborted(self.abort_reason())

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


class DdCopy(_Copy):
    """Copies `size` bytes from one local path to another with dd, one synced run per slice."""

    def __init__(self, source: str, dest: str, size: int, block_size: int, bps_limit: int,
                 abort_event: threading.Event, **kwargs) -> None:
        super().__init__(size, block_size, bps_limit, abort_event, **kwargs)
        self.source, self.dest = source, dest
        self._pid: int | None = None
        self._seen = self.start

    def position(self) -> int:
        # The highest position seen, so the report never goes back: between a
        # dd's exit and the checkpoint that follows it, fdinfo is gone and the
        # last durable point still lags what that dd wrote.
        pid = self._pid
        pos = read_fdinfo_pos(pid) if pid is not None else None
        self._seen = min(max(self._seen, self._durable, pos or 0), self.size)
        return self._seen

    def _args(self, first_block: int, count: int) -> list[str]:
        # nocreat: a destination removed during the copy is an error, not a new
        # file holding only the tail of the data.
        conv = ["notrunc", "fdatasync", "nocreat"]
        if self.sparse:
            # The destination is freshly created and reads as zeros, so dd may
            # seek over zero blocks instead of writing them: it stays sparse.
            # After a crash the region past the checkpoint holds zeros or the
            # same source bytes, so skipping zeros there is still right.
            conv.append("sparse")
            # dd skips only whole zero *output* blocks: with obs = one page, a
            # block holding some data does not allocate its zero pages too.
            sizes = [f"ibs={self.block_size}", f"obs={SPARSE_GRAIN}"]
        else:
            sizes = [f"bs={self.block_size}"]
        args = ["dd", f"if={self.source}", f"of={self.dest}", *sizes,
                f"conv={','.join(conv)}", f"count={count}", "iflag=nofollow"]
        if first_block:
            args += [f"skip={first_block}", f"seek={first_block * self.block_size}",
                     "oflag=seek_bytes,nofollow"]
        else:
            args.append("oflag=nofollow")
        return args

    def _run_dd(self, args: list[str], expected: int) -> None:
        LOG.debug("Running %s", args)
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=DD_ENV)
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
        # dd's own count, from its closing line "N bytes (...) copied, ...": fewer
        # bytes than asked means the source ended (dd exits 0 on a short input).
        match = _DD_BYTES_RE.search(stderr)
        copied = int(match.group(1)) if match else -1
        if copied < expected:
            raise CopyFailed(f"the source ended early: dd copied {max(copied, 0)} of the "
                             f"{expected} bytes asked ({stderr.splitlines()[-1] if stderr else 'no report'})")
        self.bytes_written += copied

    def run(self) -> int:
        """Copy from `start` to the end; return the bytes this run copied."""
        self._check_abort()
        self._check_source_path(self.source)
        schedule = RateSchedule(self.bps_limit, self.abort_event)
        per_run = self._slice_bytes() // self.block_size
        blocks = -(-self.size // self.block_size)
        block = self.start // self.block_size
        while block < blocks:
            schedule.wait_until(block * self.block_size - self.start)
            self._check_abort()
            count = min(per_run, blocks - block)
            offset = block * self.block_size
            expected = min(count * self.block_size, self.size - offset)
            # conv=fdatasync: durable on exit.
            self._run_dd(self._args(block, count), expected)
            block += count
            self._made_durable(min(block * self.block_size, self.size))
        self._check_source_path(self.source)
        return self.bytes_written


class FileCopy(_Copy):
    """Copies `size` bytes between two file-like objects (position vs size progress)."""

    def __init__(self, source: BinaryIO, dest: BinaryIO, size: int, block_size: int,
                 bps_limit: int, abort_event: threading.Event, **kwargs) -> None:
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

    def _sync(self) -> None:
        self.dest.flush()
        try:
            fd = self.dest.fileno()
        except (OSError, ValueError):
            return  # not a real file: flush() is all it offers
        os.fsync(fd)

    def run(self) -> int:
        schedule = RateSchedule(self.bps_limit, self.abort_event)
        zeros = bytes(self.block_size)
        sync_every = self._slice_bytes()
        self._check_source_handle()
        self.source.seek(self.start)
        self.dest.seek(self.start)
        pos = synced = self.start
        try:
            while pos < self.size:
                self._check_abort()
                schedule.wait_until(pos - self.start)
                chunk = self.source.read(min(self.block_size, self.size - pos))
                if not chunk:
                    raise CopyFailed(f"the source ended early, at byte {pos} of {self.size}")
                if self.sparse:
                    # A fresh destination already reads as zeros: write only the
                    # pages that hold data, so it is no more allocated than the source.
                    self._write_data_pages(chunk, zeros)
                else:
                    self.dest.write(chunk)
                pos += len(chunk)
                self._pos = self.dest.tell()
                self.bytes_written += len(chunk)
                if pos - synced >= sync_every and pos < self.size:
                    self._sync()
                    synced = pos
                    self._made_durable(pos)
            self._sync()
            self._check_source_handle()
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


# Bytes one sendfile call moves at most: short enough to see progress, aborts
# and the rate limit between calls.
KERNEL_CHUNK = 8 * 1024 * 1024


def data_extents(fd: int, start: int, end: int):
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


class KernelCopy(_Copy):
    """Copies between local paths inside the kernel (sendfile), skipping the source's holes.

    No byte passes through user space, and where the destination reads zeros
    the holes the source's file system reports are not read at all. A dense
    1 GiB file was copied and made durable in 0.65 s here against 1.5 s for
    ``dd bs=1M conv=fdatasync``. Progress is the logical position, so a
    sparse volume reaches 100 %.
    """

    def __init__(self, source: str, dest: str, size: int, block_size: int, bps_limit: int,
                 abort_event: threading.Event, *, hole_map: str | None = None,
                 **kwargs) -> None:
        super().__init__(size, block_size, bps_limit, abort_event, **kwargs)
        self.source, self.dest = source, dest
        # A file laid out like the source (a loop device's backing file): asked
        # for holes where the source itself, a block device, cannot tell.
        self.hole_map = hole_map
        self._pos = self.start

    def position(self) -> int:
        return self._pos

    def _regions(self, src: int):
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
        schedule = RateSchedule(self.bps_limit, self.abort_event)
        sync_every = self._slice_bytes()
        src = open_nofollow(self.source, os.O_RDONLY)
        try:
            self._check_source_size(readable_size(src))
            dst = open_nofollow(self.dest, os.O_WRONLY)
            try:
                self._copy(src, dst, schedule, sync_every)
            finally:
                os.close(dst)
            # Truncated during the copy: its holes past the new end were crossed
            # as zeros, so only the size tells. Asked afresh at the path too.
            self._check_source_size(readable_size(src))
            self._check_source_path(self.source)
        finally:
            os.close(src)
        self._made_durable(self.size)
        return self.bytes_written

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
