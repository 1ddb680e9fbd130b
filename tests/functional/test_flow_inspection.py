"""Developers see each case's graph and every atom's saved state."""

import html
import json
import os
import shutil
import subprocess
import sys

import pytest

from vmtest import MiB, host, lose_flow, write_config
from volmigrate.engine import inspection, persistence

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(os.path.dirname(sys.executable), "volmigrate")
GENERIC_ORDER = ["mark-starting", "connect-source", "create-destination",
                 "connect-destination", "copy-data", "monitor-progress",
                 "disconnect-destination", "disconnect-source", "prove-destination",
                 "complete-migration", "mark-success"]


def _generated():
    sys.path.insert(0, os.path.join(REPO, "doc"))
    try:
        import generate_graphs
        return generate_graphs.generated()
    finally:
        sys.path.pop(0)


def test_committed_graphs_are_current():
    for name, text in _generated().items():
        with open(os.path.join(REPO, "doc", "graphs", name), encoding="utf-8") as f:
            assert f.read() == text, (f"doc/graphs/{name} is stale: run "
                                      f"`.venv/bin/python doc/generate_graphs.py`")


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz (dot) is not installed")
def test_dot_renders_with_graphviz(tmp_path):
    for name, text in _generated().items():
        if name.endswith(".dot"):
            out = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True)
            assert out.returncode == 0, out.stderr
            svg = html.unescape(out.stdout)  # graphviz writes "-" as &#45;
            first_atom = "mark-starting"  # every case's graph has it; copy-data only generic
            assert "<svg" in svg and f"<title>{first_atom}</title>" in svg
            if name.startswith("generic"):
                assert "<title>copy-data</title>" in svg


def test_successful_migration_is_inspectable(make_service):
    svc = make_service()
    volume = svc.create_volume(4 * MiB, host("a"))
    response = svc.migrate_volume(volume["id"], host("b"))
    svc.wait(response.migration_id, 60)
    backend = persistence.open_backend(svc.db.engine)
    [listed] = inspection.list_flows(svc.db, backend)
    assert listed["migration_id"] == response.migration_id
    assert listed["flow_state"] == "SUCCESS" and listed["case"] == "host-copy-paths"
    shown = inspection.show_flow(svc.db, backend, volume["id"])
    assert [a["name"] for a in shown["atoms"]] == GENERIC_ORDER
    assert all(a["state"] == "SUCCESS" for a in shown["atoms"])
    copy = next(a for a in shown["atoms"] if a["name"] == "copy-data")
    assert copy["result"] == str(4 * MiB)
    assert "RUNNING" in copy["timestamps"] and "SUCCESS" in copy["timestamps"]
    graph = inspection.flow_graph(response.migration_id, svc.db, backend)
    assert set(graph) == set(inspection.case_graph("host-copy-paths"))
    assert {graph.nodes[n]["state"] for n in graph} == {"SUCCESS"}


def test_failed_atom_shows_its_failure(make_service):
    svc = make_service(backends={"a": {}, "b": {
        "volume_driver": "vmtest_faulty:FaultyLocalDriver", "fail_on": "create"}})
    volume = svc.create_volume(MiB, host("a"))
    svc.wait(svc.migrate_volume(volume["id"], host("b")).migration_id, 60)
    shown = inspection.show_flow(svc.db, persistence.open_backend(svc.db.engine), volume["id"])
    assert shown["flow_state"] == "REVERTED"
    failed = [a for a in shown["atoms"] if a["failure"]]
    assert [a["name"] for a in failed] == ["create-destination"]
    assert "injected failure of create" in failed[0]["failure"]["message"]
    traceback = failed[0]["failure"]["traceback"]  # the frames, down to the raise
    assert "volume_tasks.py" in traceback and "raise MigrationFailed" in traceback


def test_missing_flow_detail_is_said_clearly(make_service):
    svc = make_service()
    volume = svc.create_volume(MiB, host("a"))
    migration = svc.wait(svc.migrate_volume(volume["id"], host("b")).migration_id, 60)
    lose_flow(svc, migration["flow_uuid"])
    backend = persistence.open_backend(svc.db.engine)
    assert inspection.list_flows(svc.db, backend)[0]["flow_state"] == "missing"
    assert inspection.show_flow(svc.db, backend, migration["id"])["atoms"] == []
    with pytest.raises(LookupError, match="flow detail of migration .* is missing"):
        inspection.flow_graph(migration["id"], svc.db, backend)


def test_flow_commands(tmp_path):
    conf = write_config(tmp_path)
    run = lambda *a: subprocess.run([CLI, "--config-file", conf, *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    volume = json.loads(run("create", "--size", "1M", "--host", host("a"), "--format",
                            "json").stdout)
    assert run("migrate", volume["id"], host("b")).returncode == 0
    flows = json.loads(run("flow", "list", "--format", "json").stdout)
    assert [f["flow_state"] for f in flows] == ["SUCCESS"]
    shown = run("flow", "show", volume["id"])
    assert shown.returncode == 0 and "copy-data" in shown.stdout
    dot = run("flow", "graph", flows[0]["migration_id"], "--format", "dot")
    assert dot.stdout.startswith('digraph "migrate-volume-host-copy-paths"')
    assert "palegreen" in dot.stdout
    case = subprocess.run([CLI, "flow", "graph", "host-copy-paths"], capture_output=True, text=True)
    assert case.stdout == open(os.path.join(REPO, "doc", "graphs", "host-copy-paths.txt")).read()
    missing = run("flow", "show", "nope")
    assert missing.returncode == 1 and "no migration found for nope" in missing.stderr
