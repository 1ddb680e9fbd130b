"""Printing rows as tables or JSON, and the live progress bar."""

from __future__ import annotations

import datetime
import json
import sys
import time
from collections.abc import Callable, Iterable

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

VOLUME_COLUMNS = ("id", "name", "size", "host", "status", "migration_status", "attach_status")


def console() -> Console:
    """A console; off a terminal, wide enough that ids and hosts are not folded."""
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


def print_record(record: dict, title: str | None = None) -> None:
    table = Table(title=title, show_header=True)
    table.add_column("Field")
    table.add_column("Value", overflow="fold")
    for key in sorted(record):
        value = _plain(record[key])
        table.add_row(key, "" if value is None else str(value))
    console().print(table)


def print_rows(rows: Iterable[dict], columns: Iterable[str]) -> None:
    columns = list(columns)
    table = Table(show_header=True)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(_plain(row.get(c))) for c in columns))
    console().print(table)


def follow_progress(poll: Callable[[], dict], finished: Callable[[], bool],
                    label: str, interval: float = 0.1) -> None:
    """Draw a live progress bar from `poll()` until `finished()` is true."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                  DownloadColumn(binary_units=True), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=console(), transient=False) as bar:
        task = None
        while True:
            done = finished()
            info = poll()
            if task is None:
                task = bar.add_task(label, total=info["bytes_total"] or 1)
            bar.update(task, completed=info["bytes_copied"],
                       description=f"{label} ({info['migration_status'] or 'queued'})")
            if done:
                break
            time.sleep(interval)
