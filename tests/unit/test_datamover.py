"""The data mover stands below the flows: no TaskFlow, no import back up.

And its errors reach administrators unchanged: a copy task turns them into
the migration's own errors with the same text.
"""

import ast
import pathlib
import threading

import pytest

from volmigrate.flows import copy_tasks
from volmigrate.flows import datamover
from volmigrate.flows.datamover import CopyAborted, CopyFailed, DataMoverError
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
        with copy_tasks._as_migration_errors():
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
