"""The data mover stands below the flows: no TaskFlow, no import back up.

And its errors reach administrators unchanged: a copy task turns them into
the migration's own errors with the same text.
"""

import ast
import os
import pathlib
import threading

import pytest

from volmigrate.flows import copy_tasks, runtime
from volmigrate.flows import datamover
from volmigrate.flows.datamover import CopyAborted, CopyFailed, CopyParked, DataMoverError
from volmigrate.flows.exceptions import MigrationAborted, MigrationFailed

PACKAGE = pathlib.Path(datamover.__file__).parent


def _imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    return names


@pytest.mark.parametrize("module", sorted(p.name for p in PACKAGE.glob("*.py")))
def test_imports_nothing_above_it(module):
    for name in _imports(PACKAGE / module):
        assert not name.startswith("taskflow"), f"{module} imports {name}"
        if name.startswith("volmigrate."):
            assert name.startswith("volmigrate.flows.datamover"), f"{module} imports {name}"


@pytest.mark.parametrize("raised,caught", [(CopyFailed, MigrationFailed),
                                           (CopyAborted, MigrationAborted)])
def test_errors_become_the_migrations_own_with_the_same_text(raised, caught):
    with pytest.raises(caught) as info:
        with copy_tasks._as_migration_errors(runtime.Tracker()):
            raise raised("the source ended early")
    assert str(info.value) == "the source ended early"
    assert isinstance(info.value.__cause__, DataMoverError)


def test_an_abort_stops_a_copy_with_its_reason(tmp_path):
    source, dest = tmp_path / "source", tmp_path / "dest"
    source.write_bytes(b"x" * 8192)
    dest.touch()
    abort = threading.Event()
    abort.set()
    with pytest.raises(CopyAborted, match="^aborted: attach$"):
        datamover.KernelCopy(str(source), str(dest), 8192, 4096, 0, abort,
                             abort_reason=lambda: "aborted: attach").run()


@pytest.mark.parametrize("method", ["kernel", "file"])
def test_a_copy_stopped_for_a_restart_makes_what_it_wrote_durable(tmp_path, method):
    """Parking (the service stopping on SIGTERM) is not an abort: the copy records
    a durable checkpoint where it stands, to be resumed from there."""
    size, block = 64 * 4096, 4096
    source, dest = tmp_path / "source", tmp_path / "dest"
    source.write_bytes(bytes(range(256)) * (size // 256))
    dest.write_bytes(b"")
    os.truncate(dest, size)
    stop, checkpoints = threading.Event(), []

    def on_checkpoint(offset):
        checkpoints.append(offset)
        if offset >= 8 * block:  # the service is told to stop mid-copy
            stop.set()

    common = dict(checkpoint_bytes=block, on_checkpoint=on_checkpoint, parking=lambda: True)
    if method == "kernel":
        copier = datamover.KernelCopy(str(source), str(dest), size, block, 0, stop, **common)
        with pytest.raises(CopyParked) as info:
            copier.run()
    else:
        with open(source, "rb") as src, open(dest, "r+b") as dst:
            copier = datamover.FileCopy(src, dst, size, block, 0, stop, **common)
            with pytest.raises(CopyParked) as info:
                copier.run()
    parked_at = info.value.offset
    assert 8 * block <= parked_at < size and parked_at % block == 0
    assert checkpoints[-1] == parked_at == copier.durable()
    assert dest.read_bytes()[:parked_at] == source.read_bytes()[:parked_at]
