"""The copy by dd (``copy_method = dd``), as the spec describes it.

Progress is the ``pos:`` of ``/proc/<dd pid>/fdinfo/1``. Each slice of the
volume is one dd process with ``conv=fdatasync``, so a slice is durable when
its dd exits; dd's own byte count proves the source did not end early.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from typing import Any

from oslo_log import log as logging

from volmigrate.flows.datamover.copier import SPARSE_GRAIN, Copier
from volmigrate.flows.datamover.errors import CopyAborted, CopyFailed
from volmigrate.flows.datamover.ratelimit import ABORT_POLL_SECONDS, RateSchedule

LOG = logging.getLogger(__name__)

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


class DdCopy(Copier):
    """Copies `size` bytes from one local path to another with dd, one synced run per slice."""

    def __init__(self, source: str, dest: str, size: int, block_size: int, bps_limit: int,
                 abort_event: threading.Event, **kwargs: Any) -> None:
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
                        raise CopyAborted(self.abort_reason()) from None
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
            last = stderr.splitlines()[-1] if stderr else "no report"
            raise CopyFailed(f"the source ended early: dd copied {max(copied, 0)} of the "
                             f"{expected} bytes asked ({last})")
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
