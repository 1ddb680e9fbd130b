"""Loop devices over a file or a block device range, through util-linux ``losetup``.

The local driver (``local_access = block``) and the LVM driver's loop
activation both expose backend data as loop block devices; they share this
module so that attaching, finding a device a crash left behind, reading what
a device maps and detaching it are done one way. It knows nothing of volumes:
callers decide which mapping is theirs.

Commands run as argument lists, after an optional ``prefix`` (a root helper
such as ``["sudo"]``). Reading what a device maps needs no root: it comes
from sysfs, as losetup itself reads it.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Sequence

from volmigrate.drivers.exceptions import DriverError

LOSETUP = "losetup"
SYS_BLOCK = "/sys/block"
_DELETED = " (deleted)"  # the kernel's suffix for a backing file removed since


@dataclass(frozen=True)
class LoopDevice:
    """What one loop device maps: its backing file, the byte range, its mode.

    ``backing_file`` is the kernel's path without the ``(deleted)`` suffix,
    which ``deleted`` records instead: a device over a removed file still
    holds the file's data (and its space) until it is detached.
    """

    name: str
    backing_file: str
    offset: int = 0
    sizelimit: int = 0
    read_only: bool = False
    deleted: bool = False

    def maps(self, path: str, offset: int = 0, sizelimit: int = 0) -> bool:
        """Whether this device maps that range of ``path`` (compared resolved)."""
        return (os.path.realpath(self.backing_file) == os.path.realpath(path)
                and (self.offset, self.sizelimit) == (offset, sizelimit))


def _run(args: list[str], prefix: Sequence[str]) -> str:
    command = [*prefix, *args]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DriverError(f"cannot run {command[0]}: {exc}") from exc
    if proc.returncode != 0:
        raise DriverError(f"{' '.join(args)} failed ({proc.returncode}): "
                          f"{proc.stderr.strip() or 'no message'}")
    return proc.stdout.strip()


def _flag(value: object) -> bool:
    # util-linux before 2.35 writes JSON booleans as "1"/"0" strings.
    return value is True or str(value).lower() in ("1", "true")


def _split_deleted(backing: str) -> tuple[str, bool]:
    if backing.endswith(_DELETED):
        return backing[:-len(_DELETED)], True
    return backing, False


def attach(path: str, *, read_only: bool = False, direct_io: bool = False,
           offset: int | None = None, sizelimit: int | None = None,
           prefix: Sequence[str] = ()) -> str:
    """Attach ``path`` (or ``sizelimit`` bytes of it from ``offset``) to a free
    loop device and return the device's path.

    losetup picks the free device and retries by itself when another process
    takes it first, so concurrent attaches need no lock here.
    """
    args = [LOSETUP, "--find", "--show"]
    if direct_io:
        args.append("--direct-io=on")
    if offset is not None:
        args += ["--offset", str(offset)]
    if sizelimit is not None:
        args += ["--sizelimit", str(sizelimit)]
    if read_only:
        args.append("--read-only")
    return _run(args + [path], prefix)


def find(path: str, *, prefix: Sequence[str] = ()) -> list[LoopDevice]:
    """The loop devices attached to ``path``, in losetup's order.

    losetup matches the file itself (device and inode), not only its name.
    """
    listing = _run([LOSETUP, "--list", "--json", "--output",
                    "NAME,BACK-FILE,OFFSET,SIZELIMIT,RO", "--associated", path], prefix)
    if not listing:  # some util-linux versions print nothing when none is attached
        return []
    try:
        rows = json.loads(listing)["loopdevices"]
        found = []
        for row in rows:
            backing, deleted = _split_deleted(row.get("back-file") or "")
            found.append(LoopDevice(row["name"], backing, int(row.get("offset") or 0),
                                    int(row.get("sizelimit") or 0), _flag(row.get("ro")),
                                    deleted))
    except (ValueError, KeyError, TypeError) as exc:
        raise DriverError(f"cannot parse the output of losetup --list: {exc}") from exc
    return found


def info(device: str) -> LoopDevice | None:
    """What ``device`` maps now, or None when it maps nothing (detached, or no loop).

    Read from sysfs rather than kept from attach time: after a crash or a
    reboot the same device number may map another file, or another mode.
    """
    sys_dir = os.path.join(SYS_BLOCK, os.path.basename(device))
    try:
        with open(f"{sys_dir}/loop/backing_file", encoding="utf-8") as f:
            backing, deleted = _split_deleted(f.read().rstrip("\n"))
        with open(f"{sys_dir}/loop/offset", encoding="utf-8") as f:
            offset = int(f.read())
        with open(f"{sys_dir}/loop/sizelimit", encoding="utf-8") as f:
            sizelimit = int(f.read())
        with open(f"{sys_dir}/ro", encoding="utf-8") as f:
            read_only = f.read().strip() == "1"
    except (OSError, ValueError):
        return None
    return LoopDevice(device, backing, offset, sizelimit, read_only, deleted)


def detach(device: str, *, prefix: Sequence[str] = ()) -> None:
    """Detach ``device``. The kernel defers it while the device is still open
    (it is cleared on the last close), so a reader in flight is not cut off."""
    _run([LOSETUP, "--detach", device], prefix)
