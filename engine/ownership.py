"""Who runs a migration's flow, and whether that process is still alive.

A migration row names its owner as ``hostname/boot_id/pid/start_ticks``. On
the same host, liveness is exact and immediate: the boot must be the same and
the pid must still be the process that started at that tick (a pid reused by
another program has another start time). An owner on another host is judged
by its heartbeat.
"""

from __future__ import annotations

import datetime
import functools
import os
import socket

from volmigrate.db import models


@functools.lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return "unknown-boot"


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after it are fixed.
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19]  # field 22 of the whole line: starttime


def identity() -> str:
    """This process, as written in the owner column."""
    return f"{socket.gethostname()}/{_boot_id()}/{os.getpid()}/{_start_ticks(os.getpid())}"


def describe(owner: str | None) -> str:
    """The owner as an administrator reads it: "process PID on HOST"."""
    try:
        hostname, _boot_id, pid, _ticks = (owner or "").split("/")
    except ValueError:
        return "a process"
    return f"process {pid} on {hostname}"


def owner_alive(owner: str | None, heartbeat_at: datetime.datetime | None,
                stale_after: float) -> bool:
    if not owner:
        return False
    try:
        hostname, boot_id, pid, ticks = owner.split("/")
    except ValueError:
        return False
    if hostname == socket.gethostname():
        return boot_id == _boot_id() and _start_ticks(int(pid)) == ticks
    if heartbeat_at is None:
        return False
    return (models.utcnow() - heartbeat_at).total_seconds() < stale_after
