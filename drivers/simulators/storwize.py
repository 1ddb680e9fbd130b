"""A simulator of an IBM Storwize/SVC array's command line, served over SSH.

NOT a real array. There is no Storwize hardware where volmigrate is built and
tested, so this process stands in for one, for tests and demos: an SSH server
(paramiko) that runs the subset of the ``svcinfo``/``svctask`` commands the
Storwize driver uses, against vdisks kept as sparse files, one folder per
pool. A ``migratevdisk`` really moves the data to the other pool's folder in
the background, at ``--migrate-rate``, and ``lsmigrate`` reports how far it
got in the real command's format. doc/storwize-simulator.md lists the
commands, formats, error codes and the simulator-only extensions.

    volmigrate simulator storwize --listen 127.0.0.1:2222 --data-dir DIR \\
        --pools pool1,pool2 [--pool-capacity 16G] [--migrate-rate 256M] \\
        [--login superuser --password passw0rd] [--fail migratevdisk=CMMVC5859E]

Its state (pools, vdisks, host mappings, moves in flight) is kept in
DATA_DIR/state.json, written atomically, so a simulator killed and started
again carries on: a move resumes from its last durable position.

It imports nothing of volmigrate: drivers know nothing of the engine, and the
simulator must start fast (tests restart it within a driver's retry window).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import shlex
import signal
import socket
import sys
import threading
import time
import uuid

import paramiko

LOG = logging.getLogger(__name__)

READY = "storwize simulator ready on {host}:{port}"
STATE_FILE = "state.json"
HOST_KEY_FILE = "ssh_host_rsa_key"
# Suffix of the file a move writes in the target pool. "~" cannot appear in a
# vdisk name, so it never clashes with a vdisk's own file.
MOVING_SUFFIX = "~moving"
CHUNK = 1024 * 1024
# A move records its durable position (fsync, then the state file) at least
# this often, so a restarted simulator resumes it instead of starting again.
CHECKPOINT_SECONDS = 1.0
CHECKPOINT_BYTES = 64 * 1024 * 1024
EXTENT_SIZE_MB = 256
# How long an answered exec channel stays open before the server closes it
# (see _Session._answer).
CLOSE_DELAY = 0.1
# Names of vdisks and pools: the real array's rules (a letter or underscore
# first; letters, digits, "_", "-", "." after; 63 at most), without spaces.
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,62}$")
CODE_RE = re.compile(r"^CMMVC\d{4}[EWI]$")

MESSAGES = {
    "CMMVC5707E": "Required parameters are missing.",
    "CMMVC5709E": "The parameter is not supported: {detail}.",
    "CMMVC5753E": "The specified object does not exist or is not a suitable candidate.",
    "CMMVC5754E": "The specified object does not exist, or the name supplied does not meet "
                  "the naming rules.",
    "CMMVC5840E": "The virtual disk (VDisk) was not deleted because it is mapped to a host "
                  "or is being migrated.",
    "CMMVC5842E": "The action failed because an object that was specified in the command "
                  "does not exist.",
    "CMMVC5859E": "The migration did not complete because another migration of the object "
                  "is in progress.",
    "CMMVC5860E": "The action failed because there were not enough extents in the managed "
                  "disk group.",
    "CMMVC5878E": "The virtual disk (VDisk) to host mapping was not created because this "
                  "VDisk is already mapped to this host.",
    "CMMVC6035E": "The action failed as the object already exists.",
    "CMMVC6051E": "An unsupported action was selected.",
    "CMMVC6096E": "The action failed because the VDisk is already in the target managed "
                  "disk group.",
    "CMMVC6527E": "The name that you have entered is not valid. The name can contain "
                  "letters, numbers, periods, dashes, and underscores, and must begin with "
                  "a letter or an underscore.",
}
INJECTED = "The action failed (fault injected by the simulator's --fail option)."
VALUE_OPTIONS = {"-delim", "-name", "-mdiskgrp", "-iogrp", "-size", "-unit", "-vdisk",
                 "-host", "-threads", "-scsi"}
FLAG_OPTIONS = {"-bytes", "-force", "-nohdr"}
UNITS = {"b": 1, "kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3, "tb": 1024 ** 4}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes in `text`: an integer with an optional binary suffix K, M, G or T."""
    match = _SIZE_RE.match(text)
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"invalid size {text!r}: expected a positive integer with an "
                         f"optional binary unit K, M, G or T, e.g. 256M")
    return int(match.group(1)) * 1024 ** "_kmgt".index(match.group(2).lower() or "_")


class CLIError(Exception):
    """A command the array refuses: exit status 1, `CODE message` on stderr."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(code)
        self.code, self.detail = code, detail

    def __str__(self) -> str:
        return f"{self.code} {MESSAGES.get(self.code, INJECTED).format(detail=self.detail)}"


def _write_atomically(path: str, text: str) -> None:
    """Write, fsync, rename over, fsync the folder: a crash leaves the old or the new file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    _fsync_dir(os.path.dirname(path))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _data_ranges(fd: int, start: int, end: int) -> list[tuple[int, int]]:
    """(offset, length) of the data (not holes) of the file between start and end."""
    ranges = []
    pos = start
    while pos < end:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole up to the end of the file
                break
            if exc.errno == errno.EINVAL:  # no SEEK_DATA here: treat all of it as data
                return [(start, end - start)]
            raise
        if data >= end:
            break
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        ranges.append((data, min(hole, end) - data))
        pos = hole
    return ranges


class Array:
    """The array's objects and the moves running on it; every change is saved at once.

    One lock guards the state: commands run under it, and a move takes it
    only to publish its position and to switch the vdisk at the end.
    """

    def __init__(self, data_dir: str, pools: list[str], pool_capacity: int,
                 migrate_rate: int, faults: dict[str, str]) -> None:
        self.data_dir, self.pool_capacity = data_dir, pool_capacity
        self.migrate_rate, self.faults = migrate_rate, faults
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.live: dict[str, int] = {}  # vdisk name -> bytes moved so far (not durable)
        self.movers: list[threading.Thread] = []
        self.state_path = os.path.join(data_dir, STATE_FILE)
        os.makedirs(data_dir, exist_ok=True)
        state = {"pools": [], "vdisks": {}, "migrations": {}, "next_id": 0}
        if os.path.exists(self.state_path):
            with open(self.state_path, encoding="utf-8") as f:
                state = json.load(f)
        for pool in pools:
            if pool not in state["pools"]:
                state["pools"].append(pool)
        self.state = state
        for pool in self.state["pools"]:
            os.makedirs(os.path.join(data_dir, pool), exist_ok=True)
        self._recover()
        self._save()

    def start_movers(self) -> None:
        """Carry on with the moves a previous run left unfinished."""
        for name in list(self.state["migrations"]):
            self._start_mover(name)

    # -- state ----------------------------------------------------------------
    def _save(self) -> None:
        _write_atomically(self.state_path, json.dumps(self.state, indent=1, sort_keys=True))

    def _recover(self) -> None:
        """Make the files agree with the state after a kill at any point.

        A move killed after renaming its copy into place but before saving the
        switch is finished now (the copy was complete and synced); files no
        vdisk or move owns (a vdisk made or removed, or a move switched, just
        before a kill) are deleted.
        """
        for name, move in list(self.state["migrations"].items()):
            vdisk = self.state["vdisks"][name]
            moving = self.path(move["target"], name, MOVING_SUFFIX)
            if os.path.exists(moving):
                continue
            if os.path.exists(self.path(move["target"], name)):
                LOG.info("vdisk %s: finishing the switch to pool %s", name, move["target"])
                vdisk["pool"] = move["target"]
                del self.state["migrations"][name]
            else:  # the copy is lost: move it again from the start
                with open(moving, "wb") as f:
                    f.truncate(vdisk["capacity"])
                move["moved"] = 0
        owned = {self.path(v["pool"], n) for n, v in self.state["vdisks"].items()}
        owned |= {self.path(m["target"], n, MOVING_SUFFIX)
                  for n, m in self.state["migrations"].items()}
        for pool in self.state["pools"]:
            folder = os.path.join(self.data_dir, pool)
            for entry in os.listdir(folder):
                path = os.path.join(folder, entry)
                if path not in owned and os.path.isfile(path):
                    LOG.info("Removing %s: no vdisk owns it", path)
                    os.unlink(path)

    def _vdisk(self, name: str, code: str = "CMMVC5754E") -> dict:
        vdisk = self.state["vdisks"].get(name)
        if vdisk is None:
            raise CLIError(code)
        return vdisk

    def _pool(self, name: str) -> str:
        if name not in self.state["pools"]:
            raise CLIError("CMMVC5754E")
        return name

    def path(self, pool: str, name: str, suffix: str = "") -> str:
        return os.path.join(self.data_dir, pool, name + suffix)

    def used(self, pool: str) -> int:
        """Capacity given away in `pool`: its vdisks and the moves coming into it."""
        used = sum(v["capacity"] for v in self.state["vdisks"].values() if v["pool"] == pool)
        for name, move in self.state["migrations"].items():
            if move["target"] == pool:
                used += self.state["vdisks"][name]["capacity"]
        return used

    def _reserve(self, pool: str, size: int) -> None:
        if self.used(pool) + size > self.pool_capacity:
            raise CLIError("CMMVC5860E")

    # -- commands -------------------------------------------------------------
    def run(self, line: str) -> str:
        """Run one command line (split like a shell would, never run by one)."""
        try:
            words = shlex.split(line)
        except ValueError:
            raise CLIError("CMMVC6051E") from None
        if len(words) < 2 or words[0] not in ("svcinfo", "svctask"):
            raise CLIError("CMMVC6051E")
        action = words[1]
        handler = getattr(self, f"cmd_{action}", None)
        if handler is None:
            raise CLIError("CMMVC6051E")
        if action in self.faults:
            raise CLIError(self.faults[action])
        options, positional = self._parse(words[2:])
        with self.lock:
            return handler(options, positional)

    @staticmethod
    def _parse(words: list[str]) -> tuple[dict[str, str | bool], list[str]]:
        options: dict[str, str | bool] = {}
        positional = []
        i = 0
        while i < len(words):
            word = words[i]
            if word in VALUE_OPTIONS:
                if i + 1 >= len(words):
                    raise CLIError("CMMVC5707E")
                options[word] = words[i + 1]
                i += 2
            elif word in FLAG_OPTIONS:
                options[word] = True
                i += 1
            elif word.startswith("-"):
                raise CLIError("CMMVC5709E", word)
            else:
                positional.append(word)
                i += 1
        return options, positional

    @staticmethod
    def _table(options, header: list[str], rows: list[list]) -> str:
        delim = options.get("-delim", " ")
        lines = [] if options.get("-nohdr") else [delim.join(header)]
        lines += [delim.join(str(c) for c in row) for row in rows]
        return "\n".join(lines) + "\n" if lines else ""

    @staticmethod
    def _detail(options, pairs: list[tuple[str, object]]) -> str:
        delim = options.get("-delim", " ")
        return "".join(f"{k}{delim}{v}\n" for k, v in pairs)

    @staticmethod
    def _size(options, value: int) -> str:
        return str(value) if options.get("-bytes") else f"{value / 1024 ** 3:.2f}GB"

    def cmd_lssystem(self, options, positional) -> str:
        return self._detail(options, [
            ("id", "0000020060C14F8E"), ("name", "volmigrate-storwize-simulator"),
            ("location", "local"),
            ("product_name", "Storwize CLI simulator (volmigrate; not a real array)"),
            ("code_level", "simulator"),
            ("total_mdisk_capacity",
             self._size(options, self.pool_capacity * len(self.state["pools"])))])

    def _pool_row(self, options, index: int, pool: str) -> list:
        free = max(0, self.pool_capacity - self.used(pool))
        count = sum(1 for v in self.state["vdisks"].values() if v["pool"] == pool)
        used = self.pool_capacity - free
        return [index, pool, "online", 1, count, self._size(options, self.pool_capacity),
                EXTENT_SIZE_MB, self._size(options, free), self._size(options, used),
                self._size(options, used), self._size(options, used)]

    def cmd_lsmdiskgrp(self, options, positional) -> str:
        header = ["id", "name", "status", "mdisk_count", "vdisk_count", "capacity",
                  "extent_size", "free_capacity", "virtual_capacity", "used_capacity",
                  "real_capacity"]
        rows = [self._pool_row(options, i, p) for i, p in enumerate(self.state["pools"])]
        if positional:
            pool = self._pool(positional[0])
            row = rows[self.state["pools"].index(pool)]
            return self._detail(options, list(zip(header, row)))
        return self._table(options, header, rows)

    def _vdisk_pairs(self, options, name: str, vdisk: dict) -> list[tuple[str, object]]:
        pool = vdisk["pool"]
        return [("id", vdisk["id"]), ("name", name), ("IO_group_id", 0),
                ("IO_group_name", "io_grp0"), ("status", "online"),
                ("mdisk_grp_id", self.state["pools"].index(pool)), ("mdisk_grp_name", pool),
                ("capacity", self._size(options, vdisk["capacity"])), ("type", "striped"),
                ("vdisk_UID", vdisk["uid"])]

    def cmd_lsvdisk(self, options, positional) -> str:
        if positional:
            name = positional[0]
            vdisk = self._vdisk(name)
            pairs = self._vdisk_pairs(options, name, vdisk)
            pairs.append(("copy_count", 1))
            pairs.append(("fast_write_state", "empty"))
            # Simulator-only: where the data is, for the driver's `simulator` connector.
            pairs.append(("sim_data_path", self.path(vdisk["pool"], name)))
            return self._detail(options, pairs)
        rows = [[v for _, v in self._vdisk_pairs(options, name, vdisk)]
                for name, vdisk in sorted(self.state["vdisks"].items(),
                                          key=lambda item: item[1]["id"])]
        header = ["id", "name", "IO_group_id", "IO_group_name", "status", "mdisk_grp_id",
                  "mdisk_grp_name", "capacity", "type", "vdisk_UID"]
        return self._table(options, header, rows)

    def cmd_mkvdisk(self, options, positional) -> str:
        for required in ("-name", "-mdiskgrp", "-size"):
            if required not in options:
                raise CLIError("CMMVC5707E")
        name = str(options["-name"])
        if not NAME_RE.match(name):
            raise CLIError("CMMVC6527E")
        pool = self._pool(str(options["-mdiskgrp"]))
        unit = str(options.get("-unit", "mb")).lower()
        size_text = str(options["-size"])
        if unit not in UNITS or not size_text.isdigit() or int(size_text) == 0:
            raise CLIError("CMMVC5709E", f"-size {size_text} -unit {unit}")
        size = int(size_text) * UNITS[unit]
        if name in self.state["vdisks"]:
            raise CLIError("CMMVC6035E")
        self._reserve(pool, size)
        with open(self.path(pool, name), "wb") as f:
            f.truncate(size)  # sparse: reads as zeros, like a formatted vdisk
        vdisk_id = self.state["next_id"]
        self.state["next_id"] += 1
        self.state["vdisks"][name] = {"id": vdisk_id, "pool": pool, "capacity": size,
                                      "uid": uuid.uuid4().hex.upper(), "hosts": []}
        self._save()
        return f"Virtual Disk, id [{vdisk_id}], successfully created\n"

    def cmd_rmvdisk(self, options, positional) -> str:
        if not positional:
            raise CLIError("CMMVC5707E")
        name = positional[0]
        vdisk = self._vdisk(name, "CMMVC5753E")
        if name in self.state["migrations"] or (vdisk["hosts"] and not options.get("-force")):
            raise CLIError("CMMVC5840E")
        del self.state["vdisks"][name]
        self._save()
        try:
            os.unlink(self.path(vdisk["pool"], name))
        except FileNotFoundError:
            pass
        return ""

    def cmd_mkvdiskhostmap(self, options, positional) -> str:
        if not positional or "-host" not in options:
            raise CLIError("CMMVC5707E")
        vdisk = self._vdisk(positional[0], "CMMVC5753E")
        host = str(options["-host"])
        if not NAME_RE.match(host):
            raise CLIError("CMMVC6527E")
        if host in vdisk["hosts"]:
            raise CLIError("CMMVC5878E")
        vdisk["hosts"].append(host)
        self._save()
        return f"Virtual Disk to Host map, id [{len(vdisk['hosts']) - 1}], successfully created\n"

    def cmd_rmvdiskhostmap(self, options, positional) -> str:
        if not positional or "-host" not in options:
            raise CLIError("CMMVC5707E")
        vdisk = self._vdisk(positional[0], "CMMVC5753E")
        if options["-host"] not in vdisk["hosts"]:
            raise CLIError("CMMVC5842E")
        vdisk["hosts"].remove(options["-host"])
        self._save()
        return ""

    def cmd_lsvdiskhostmap(self, options, positional) -> str:
        if not positional:
            raise CLIError("CMMVC5707E")
        name = positional[0]
        vdisk = self._vdisk(name)
        header = ["id", "name", "SCSI_id", "host_id", "host_name", "vdisk_UID",
                  "IO_group_id", "IO_group_name"]
        rows = [[vdisk["id"], name, i, i, host, vdisk["uid"], 0, "io_grp0"]
                for i, host in enumerate(vdisk["hosts"])]
        return self._table(options, header, rows)

    def cmd_migratevdisk(self, options, positional) -> str:
        if "-mdiskgrp" not in options or "-vdisk" not in options:
            raise CLIError("CMMVC5707E")
        threads = str(options.get("-threads", "4"))
        if not threads.isdigit() or not 1 <= int(threads) <= 4:
            raise CLIError("CMMVC5709E", f"-threads {threads}")
        name = str(options["-vdisk"])
        vdisk = self._vdisk(name, "CMMVC5753E")
        target = self._pool(str(options["-mdiskgrp"]))
        if name in self.state["migrations"]:
            raise CLIError("CMMVC5859E")
        if vdisk["pool"] == target:
            raise CLIError("CMMVC6096E")
        self._reserve(target, vdisk["capacity"])
        with open(self.path(target, name, MOVING_SUFFIX), "wb") as f:
            f.truncate(vdisk["capacity"])
        self.state["migrations"][name] = {"target": target, "moved": 0,
                                          "threads": int(threads)}
        self._save()
        self._start_mover(name)
        return ""

    def cmd_lsmigrate(self, options, positional) -> str:
        delim = options.get("-delim", " ")
        blocks = []
        for name, move in sorted(self.state["migrations"].items(),
                                 key=lambda item: self.state["vdisks"][item[0]]["id"]):
            vdisk = self.state["vdisks"][name]
            moved = max(self.live.get(name, 0), move["moved"])
            progress = min(99, moved * 100 // max(1, vdisk["capacity"]))
            blocks.append("".join(f"{k}{delim}{v}\n" for k, v in [
                ("migrate_type", "MDisk_Group_Migration"), ("progress", progress),
                ("migrate_source_vdisk_index", vdisk["id"]),
                ("migrate_target_mdisk_grp", self.state["pools"].index(move["target"])),
                ("max_thread_count", move["threads"]),
                ("migrate_source_vdisk_copy_id", 0)]))
        return "\n".join(blocks)

    # -- the background moves -------------------------------------------------
    def _start_mover(self, name: str) -> None:
        thread = threading.Thread(target=self._move_logged, args=(name,),
                                  name=f"migrate-{name}", daemon=True)
        self.movers = [t for t in self.movers if t.is_alive()] + [thread]
        thread.start()

    def _move_logged(self, name: str) -> None:
        try:
            self._move(name)
        except Exception:  # a bug, or the data dir broke under us: say so, loudly
            LOG.exception("The move of vdisk %s failed; it stays listed by lsmigrate "
                          "until the simulator is restarted", name)

    def _move(self, name: str) -> None:
        """Copy the vdisk's data into the target pool at the migrate rate, then switch.

        The rate paces the whole capacity (the array moves every extent of a
        fully allocated vdisk), but only data is read and written: holes stay
        holes. The position is made durable every CHECKPOINT_SECONDS, so a
        restarted simulator resumes from there.
        """
        with self.lock:
            vdisk = self.state["vdisks"][name]
            move = self.state["migrations"][name]
            source, target = vdisk["pool"], move["target"]
            size, done = vdisk["capacity"], move["moved"]
        started, start_done = time.monotonic(), done
        checkpoint_time, recorded = started, done
        src = os.open(self.path(source, name), os.O_RDONLY)
        try:
            dst = os.open(self.path(target, name, MOVING_SUFFIX), os.O_WRONLY)
            try:
                while done < size:
                    if self.stopping.is_set():
                        return
                    end = min(size, done + CHUNK)
                    for offset, length in _data_ranges(src, done, end):
                        os.pwrite(dst, os.pread(src, length, offset), offset)
                    done = end
                    with self.lock:
                        self.live[name] = done
                    now = time.monotonic()
                    if now - checkpoint_time >= CHECKPOINT_SECONDS \
                            or done - recorded >= CHECKPOINT_BYTES:
                        os.fsync(dst)
                        with self.lock:
                            if self.stopping.is_set():
                                return
                            move["moved"] = recorded = done
                            self._save()
                        checkpoint_time = now
                    if self.migrate_rate:
                        delay = (started + (done - start_done) / self.migrate_rate
                                 - time.monotonic())
                        if delay > 0:
                            time.sleep(delay)
                os.fsync(dst)
            finally:
                os.close(dst)
        finally:
            os.close(src)
        with self.lock:
            if self.stopping.is_set():
                return
            os.rename(self.path(target, name, MOVING_SUFFIX), self.path(target, name))
            _fsync_dir(os.path.join(self.data_dir, target))
            vdisk["pool"] = target
            del self.state["migrations"][name]
            self.live.pop(name, None)
            self._save()
            os.unlink(self.path(source, name))
        LOG.info("vdisk %s moved from %s to %s", name, source, target)

    def stop(self) -> None:
        """Stop the moves where they are (they resume when the simulator starts again)."""
        self.stopping.set()
        for thread in self.movers:
            thread.join(timeout=5)


class _Session(paramiko.ServerInterface):
    """One SSH connection: password login, then one command per exec channel."""

    def __init__(self, simulator: "StorwizeSimulator") -> None:
        self.simulator = simulator

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        if (username, password) == (self.simulator.login, self.simulator.password):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    # shell, pty, subsystem and every other request keep paramiko's default: refused.
    def check_channel_exec_request(self, channel, command) -> bool:
        line = command.decode(errors="replace") if isinstance(command, bytes) else command
        threading.Thread(target=self._answer, args=(channel, line), name="exec",
                         daemon=True).start()
        return True

    def _answer(self, channel, line: str) -> None:
        try:
            out, err, status = self.simulator.array.run(line), "", 0
        except CLIError as exc:
            out, err, status = "", f"{exc}\n", 1
        except Exception as exc:  # a bug of the simulator: say so, like a CLI crash
            LOG.exception("Command %r failed", line)
            out, err, status = "", f"CMMVC6051E internal simulator error: {exc}\n", 1
        try:
            if out:
                channel.sendall(out.encode())
            if err:
                channel.sendall_stderr(err.encode())
            channel.send_exit_status(status)
            channel.shutdown_write()
            # paramiko answers the exec request only after check_channel_exec_request
            # has returned; a close that overtook that answer would make the client
            # see a closed channel instead of the output. Output and exit status may
            # come first (the client buffers them), so only the close waits.
            time.sleep(CLOSE_DELAY)
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the client went away
        finally:
            channel.close()


class StorwizeSimulator:
    """The SSH server in front of an :class:`Array`: ``start()``, ``.port``, ``stop()``."""

    def __init__(self, data_dir: str, pools: list[str], host: str = "127.0.0.1",
                 port: int = 0, pool_capacity: int = 16 * 1024 ** 3,
                 migrate_rate: int = 256 * 1024 ** 2, login: str = "superuser",
                 password: str = "passw0rd", faults: dict[str, str] | None = None) -> None:
        for pool in pools:
            if not NAME_RE.match(pool):
                raise ValueError(f"invalid pool name {pool!r}")
        self.array = Array(data_dir, pools, pool_capacity, migrate_rate, faults or {})
        self.login, self.password = login, password
        key_path = os.path.join(data_dir, HOST_KEY_FILE)
        if not os.path.exists(key_path):
            key = paramiko.RSAKey.generate(2048)
            key.write_private_key_file(f"{key_path}.tmp")
            os.rename(f"{key_path}.tmp", key_path)
        self.host_key = paramiko.RSAKey(filename=key_path)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.host, self.port = self.sock.getsockname()[:2]
        self._transports: list[paramiko.Transport] = []
        self._transports_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.array.start_movers()
        self._thread = threading.Thread(target=self.serve, name="ssh-accept", daemon=True)
        self._thread.start()

    def serve(self) -> None:
        """Accept connections until stopped; each one negotiates in its own thread."""
        while not self.array.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._connection, args=(conn,), name="ssh-connection",
                             daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        # Commands are small request/answer exchanges: without this, Nagle's
        # algorithm and delayed ACKs add ~40 ms to each.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(conn)
        transport.add_server_key(self.host_key)
        try:
            transport.start_server(server=_Session(self))
        except (paramiko.SSHException, EOFError, OSError):
            transport.close()
            return
        with self._transports_lock:
            self._transports = [t for t in self._transports if t.is_active()] + [transport]
        # paramiko's transport thread serves the connection from here on.

    def stop(self) -> None:
        self.array.stop()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self._transports_lock:
            for transport in self._transports:
                transport.close()


def _faults(values: list[str]) -> dict[str, str]:
    faults = {}
    for value in values:
        command, sep, code = value.partition("=")
        if not sep or not command or not CODE_RE.match(code):
            raise ValueError(f"--fail {value}: expected COMMAND=CODE, e.g. "
                             f"migratevdisk=CMMVC5859E")
        if not hasattr(Array, f"cmd_{command}"):
            raise ValueError(f"--fail {value}: the simulator has no command {command}")
        faults[command] = code
    return faults


def _size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; print one ready line with the port first."""
    parser = argparse.ArgumentParser(
        prog="volmigrate simulator storwize",
        description="Serve a simulator of an IBM Storwize/SVC array's CLI over SSH, for "
                    "tests and demos. NOT a real array.")
    parser.add_argument("--listen", default="127.0.0.1:0",
                        help="HOST:PORT to listen on (port 0: any free port)")
    parser.add_argument("--data-dir", required=True,
                        help="where vdisks, the state and the SSH host key are kept")
    parser.add_argument("--pools", default="pool1,pool2",
                        help="comma-separated pool (mdisk group) names")
    parser.add_argument("--pool-capacity", type=_size_arg, default="16G",
                        help="capacity of each pool, e.g. 16G (binary units K, M, G, T)")
    parser.add_argument("--migrate-rate", type=_size_arg, default="256M",
                        help="bytes per second a migratevdisk moves, e.g. 64M")
    parser.add_argument("--login", default="superuser")
    parser.add_argument("--password", default="passw0rd")
    parser.add_argument("--fail", action="append", default=[], metavar="COMMAND=CODE",
                        help="fault injection: COMMAND always fails with CODE, e.g. "
                             "migratevdisk=CMMVC5859E (repeatable)")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    try:
        faults = _faults(args.fail)
        pools = [p.strip() for p in args.pools.split(",") if p.strip()]
        if not pools:
            raise ValueError("--pools names no pool")
        if not port.isdigit() or int(port) > 65535:
            raise ValueError(f"--listen {args.listen}: expected HOST:PORT")
        simulator = StorwizeSimulator(args.data_dir, pools, host or "127.0.0.1", int(port),
                                      args.pool_capacity, args.migrate_rate, args.login,
                                      args.password, faults)
    except (ValueError, OSError) as exc:
        print(f"volmigrate simulator storwize: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    simulator.start()
    print(READY.format(host=simulator.host, port=simulator.port), flush=True)
    while not done.wait(1.0):  # a timed wait lets the signal handlers run
        pass
    simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
