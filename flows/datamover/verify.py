"""Checking a copy before the source is deleted (``migration_verify = checksum``).

Both sides are read back and hashed with xxHash's XXH3-128 (the ``xxhash``
package): fast enough to run at the disk's speed, and strong enough to catch
any corruption a copy could make (it is not a defence against an attacker,
which nothing here needs). Regions that are holes on both sides read as zeros
on both, so they are not read. The destination's cached pages are dropped
first, so what is checked is what the storage holds, not the page cache.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent import futures
from typing import BinaryIO

import xxhash

from volmigrate.flows.datamover.errors import CopyAborted
from volmigrate.flows.datamover.files import handle_extents

CHUNK = 4 * 1024 * 1024


def _merge(regions: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for offset, length in sorted(regions):
        if merged and offset <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], offset + length)
        else:
            merged.append([offset, offset + length])
    return [(start, end - start) for start, end in merged]


def regions_to_check(source: BinaryIO, dest: BinaryIO, size: int) -> list[tuple[int, int]]:
    """The union of both sides' data regions; all of it where a side cannot tell."""
    sides = [handle_extents(source, 0, size), handle_extents(dest, 0, size)]
    if sides[0] is None or sides[1] is None:
        return [(0, size)]
    return _merge(sides[0] + sides[1])


def drop_cache(fd: int) -> None:
    """Make the next reads come from the storage (after an fdatasync)."""
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass  # not every file supports it; the copy was synced all the same


def digest(handle: BinaryIO, regions: list[tuple[int, int]], abort: threading.Event,
           abort_reason: Callable[[], str], give_up: threading.Event | None = None) -> str:
    """XXH3-128 of the given regions of a file-like object, with their offsets.

    ``give_up`` stops a read whose result nobody will look at any more
    (the other side's read failed); it returns an empty digest.
    """
    hasher = xxhash.xxh3_128()
    for offset, length in regions:
        hasher.update(offset.to_bytes(8, "little"))
        handle.seek(offset)
        remaining = length
        while remaining:
            if abort.is_set():
                raise CopyAborted(abort_reason())
            if give_up is not None and give_up.is_set():
                return ""
            block = handle.read(min(CHUNK, remaining))
            if not block:
                break  # a side shorter than the size: `remaining` makes the digests differ
            hasher.update(block)
            remaining -= len(block)
        hasher.update(remaining.to_bytes(8, "little"))
    return hasher.hexdigest()


def digests(source: BinaryIO, dest: BinaryIO, regions: list[tuple[int, int]],
            abort: threading.Event, abort_reason: Callable[[], str]) -> tuple[str, str]:
    """Both sides' digests, read at the same time.

    The source is usually still in the page cache from the copy while the
    destination comes from the storage, so reading them side by side hides
    the source's share of the cost.
    """
    give_up = threading.Event()
    with futures.ThreadPoolExecutor(1, thread_name_prefix="verify-source") as pool:
        source_digest = pool.submit(digest, source, regions, abort, abort_reason, give_up)
        try:
            dest_digest = digest(dest, regions, abort, abort_reason)
        except BaseException:
            give_up.set()
            raise
        return source_digest.result(), dest_digest
