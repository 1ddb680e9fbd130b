"""Printing rows as tables or JSON, and the live progress bar.

Whatever comes from data or from the command line (a volume's name, an id
typed by the user, an error message quoting them) is printed through
`safe()`: control characters are shown escaped, never sent to the terminal,
and rich never reads markup in data. JSON output stays exact (json escapes
control characters itself).

rich is imported only by what draws with it (tables, the progress bar): JSON
output and plain lines start without it.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

VOLUME_COLUMNS = ("id", "name", "size", "host", "status", "migration_status", "attach_status")

# Characters a terminal acts on or that reorder what it shows: C0 and C1
# controls (ESC starts escape sequences, CR overwrites a line), line and
# paragraph separators, unpaired surrogates (undecodable bytes of argv) and
# the bidirectional overrides.
_ESCAPED_CATEGORIES = frozenset(("Cc", "Cs", "Zl", "Zp"))
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                           "\u2066\u2067\u2068\u2069")
# Write errors of a terminal that hung up (EIO) or a reader that went away (EPIPE).
_LOST_OUTPUT = (errno.EIO, errno.EPIPE)


_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_char(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe(value, keep: str = "") -> str:
    """`value` as text that cannot drive a terminal: controls shown as ``\\x1b``.

    `keep` names characters to leave alone (a multi-line text keeps ``\\n``).
    """
    text = str(value)
    if text.isprintable():
        return text
    return "".join(
        _escape_char(ch) if ch not in keep and (unicodedata.category(ch) in _ESCAPED_CATEGORIES
                                                or ch in _BIDI_CONTROLS) else ch
        for ch in text)


def say(text: str, keep: str = "") -> None:
    """A plain line on stdout, escaped."""
    print(safe(text, keep), flush=True)


def error(text: str) -> None:
    """The one line on stderr that tells why a command failed, escaped."""
    print(safe(text), file=sys.stderr, flush=True)


class SafeStream:
    """A standard stream that outlives its terminal.

    After a hang-up (SIGHUP, the terminal closed) writes fail with EIO; after
    the reader of a pipe left, with EPIPE. Neither may turn a rollback into a
    traceback: the stream's descriptor is pointed at /dev/null (so what its
    buffer still holds, and the interpreter's last flush at exit, go nowhere
    instead of failing) and later writes are dropped. Other errors (a full
    disk under a redirected output) still raise: that output was asked for.
    """

    def __init__(self, stream) -> None:
        self._stream = stream
        self.lost: OSError | None = None

    def write(self, text: str) -> int:
        if self.lost is None:
            try:
                return self._stream.write(text)
            except OSError as exc:
                self._lose(exc)
        return len(text)

    def flush(self) -> None:
        if self.lost is None:
            try:
                self._stream.flush()
            except OSError as exc:
                self._lose(exc)

    def _lose(self, exc: OSError) -> None:
        if exc.errno not in _LOST_OUTPUT:
            raise exc
        self.lost = exc
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, self._stream.fileno())
            finally:
                os.close(null)
            self._stream.flush()
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def protected_std_streams() -> Iterator[None]:
    """Within the block, stdout and stderr survive a hung-up terminal or a closed pipe."""
    saved = sys.stdout, sys.stderr
    if not isinstance(sys.stdout, SafeStream):
        sys.stdout = SafeStream(sys.stdout)
    if not isinstance(sys.stderr, SafeStream):
        sys.stderr = SafeStream(sys.stderr)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # what is left, while a lost terminal is still dealt with
        sys.stdout, sys.stderr = saved


class _EscapingStream:
    """Escapes what is written to it (keeping newlines) into another stream."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(safe(text, keep="\n"))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def escaping_stderr() -> Iterator[None]:
    """Within the block, what is written to stderr is escaped: for messages we
    do not format ourselves that quote the command line (argparse's usage
    errors repeat unknown arguments as they were typed)."""
    saved = sys.stderr
    sys.stderr = _EscapingStream(saved)
    try:
        yield
    finally:
        sys.stderr = saved


def console() -> Console:
    """A console; off a terminal, wide enough that ids and hosts are not folded."""
    from rich.console import Console

    con = Console()
    if not con.is_terminal:
        con = Console(width=200)
    return con


def _plain(value):
    """Datetimes as ISO text, at any depth of the data (json's `default` hook too)."""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


def to_json(data) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=_plain)


def print_json(data) -> None:
    sys.stdout.write(to_json(data) + "\n")


def _cell(value) -> Text:
    """A table cell: escaped, and a Text so that rich reads no markup in it."""
    from rich.text import Text

    value = _plain(value)
    return Text("" if value is None else safe(value))


def print_record(record: dict, title: str | None = None) -> None:
    from rich.table import Table

    table = Table(title=None if title is None else _cell(title), show_header=True)
    table.add_column("Field")
    table.add_column("Value", overflow="fold")
    for key in sorted(record):
        table.add_row(_cell(key), _cell(record[key]))
    console().print(table)


def print_rows(rows: Iterable[dict], columns: Iterable[str]) -> None:
    from rich.table import Table

    columns = list(columns)
    table = Table(show_header=True)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console().print(table)


def follow_progress(poll: Callable[[], dict], finished: Callable[[], bool],
                    label: str, interval: float = 0.1) -> None:
    """Draw a live progress bar from `poll()` until `finished()` is true."""
    from rich.markup import escape as escape_markup
    from rich.progress import (BarColumn, DownloadColumn, Progress, TaskProgressColumn,
                               TextColumn, TimeRemainingColumn, TransferSpeedColumn)

    label = escape_markup(safe(label))  # the bar's description is read as markup
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                  DownloadColumn(binary_units=True), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=console(), transient=False) as bar:
        task = None
        while True:
            done = finished()
            info = poll()
            if task is None:
                task = bar.add_task(label, total=info["bytes_total"] or 1)
            status = escape_markup(safe(info["migration_status"] or "queued"))
            bar.update(task, completed=info["bytes_copied"], description=f"{label} ({status})")
            if done:
                break
            time.sleep(interval)
