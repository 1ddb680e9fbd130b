"""The commands that only read start without what only migrations need.

`volmigrate list`, `show` and `progress` are what an administrator types most;
their start-up is nearly all imports. These tests run them in a fresh
interpreter and check which modules got loaded: a behaviour, not a timing
(benchmarks/run.py's `startup` row times it).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

# Loaded only by commands that run migrations, connect to an array or change the schema
# (sqlalchemy.orm: our tables are Core, and neither alembic nor TaskFlow imports it).
NOT_FOR_READING = ("taskflow", "networkx", "eventlet", "oslo_messaging", "paramiko", "alembic",
                   "sqlalchemy.orm")

PROBE = textwrap.dedent("""
    import json, sys
    from volmigrate.cli.main import main
    status = main(sys.argv[1:])
    loaded = sorted(sys.modules)
    sys.stderr.write(json.dumps({"status": status, "loaded": loaded}) + "\\n")
""")


@pytest.fixture
def conf(tmp_path):
    """A configuration with a local and a Storwize backend (never reached by these
    commands), and its database created (by a first command, which upgrades the schema)."""
    path = tmp_path / "volmigrate.conf"
    path.write_text(textwrap.dedent(f"""\
        [DEFAULT]
        state_path = {tmp_path / "state"}
        host = node1
        enabled_backends = a,array

        [a]
        volume_driver = local

        [array]
        volume_driver = storwize
        san_ip = 127.0.0.1
        san_ssh_port = 1
        storwize_svc_volpool_name = pool1
        """))
    first = subprocess.run([sys.executable, "-c", PROBE, "--config-file", str(path), "list"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert first.returncode == 0, first.stderr
    return str(path)


def _found(loaded: set[str], packages: tuple[str, ...]) -> list[str]:
    """The packages of which `loaded` (module names) holds the package or a module in it."""
    return sorted(p for p in packages
                  if p in loaded or any(m.startswith(p + ".") for m in loaded))


def _loaded(conf: str, *args: str) -> tuple[int, set[str], str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, "--config-file", conf, *args],
                          capture_output=True, text=True, cwd=os.path.dirname(conf),
                          timeout=120)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return report["status"], set(report["loaded"]), proc.stdout


@pytest.mark.parametrize("args", [("list",), ("list", "--format", "json"),
                                  ("list", "--all", "--migration-status", "error"),
                                  ("show", "no-such-volume"),
                                  ("progress", "no-such-volume", "--format", "json")])
def test_reading_commands_load_nothing_that_runs_migrations(conf, args):
    status, loaded, _ = _loaded(conf, *args)
    assert status == (0 if args[0] == "list" else 1)
    assert _found(loaded, NOT_FOR_READING) == []


def test_json_output_needs_no_rich(conf):
    status, loaded, out = _loaded(conf, "list", "--format", "json")
    assert status == 0 and json.loads(out) == []
    assert _found(loaded, ("rich",)) == []


def test_cli_case_names_are_the_flow_factories():
    """The CLI names the cases without importing their factories (TaskFlow)."""
    from volmigrate.cli import parser
    from volmigrate.flows import cases
    assert parser.CASES == cases.CASES


def test_schema_head_read_without_alembic_is_alembic_s():
    """db.session reads the head revision from the migration files; alembic agrees."""
    from alembic.script import ScriptDirectory

    from volmigrate.db import session
    script = ScriptDirectory.from_config(session._alembic_config(None))
    assert session.head_revisions() == frozenset(script.get_heads())
