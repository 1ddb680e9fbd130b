"""Flow inspection for developers: the graph of each case, the saved state of every atom.

Reads the database and TaskFlow's persistence only, so it works beside a
running service, after a crash, or on a copy of the database.
"""

from __future__ import annotations

import json
import re

import networkx as nx
import taskflow.engines
from taskflow import atom as tf_atom
from taskflow import exceptions as tf_exceptions
from taskflow.engines import helpers as tf_helpers

from volmigrate.db.api import Database
from volmigrate.flows import cases

FLOW_MISSING = "missing"
RESULT_LIMIT = 500
STATE_COLORS = {"SUCCESS": "palegreen", "RUNNING": "gold", "FAILURE": "salmon",
                "REVERTED": "lightsalmon", "REVERTING": "orange", "PENDING": "white",
                "REVERT_FAILURE": "red"}


def _flow_detail(tf_backend, flow_uuid: str | None):
    if not flow_uuid:
        return None
    try:
        return tf_backend.get_connection().get_flow_details(flow_uuid)
    except tf_exceptions.NotFound:
        return None


def _atom_graph(flow) -> nx.DiGraph:
    """The compiled execution graph, reduced to the atoms (named nodes)."""
    engine = taskflow.engines.load(flow)
    engine.compile()
    compiled = engine.compilation.execution_graph
    graph = nx.DiGraph(name=flow.name)
    atoms = [n for n in compiled.nodes if isinstance(n, tf_atom.Atom)]
    for node in atoms:
        graph.add_node(node.name, kind=type(node).__name__)
    for a, b in compiled.edges:
        if a in atoms and b in atoms:
            graph.add_edge(a.name, b.name)
    return graph


def case_graph(case: str) -> nx.DiGraph:
    return _atom_graph(cases.get_flow(case))


def flow_graph(ref: str, db: Database | None = None, tf_backend=None) -> nx.DiGraph:
    """The graph of a case, or of a migration's own flow (rebuilt from its flow
    detail, with each atom's saved state as the node attribute ``state``)."""
    if ref in cases.CASES:
        return case_graph(ref)
    if db is None or tf_backend is None:
        raise LookupError(f"{ref} is not a migration case ({', '.join(cases.CASES)})")
    migration = _migration(db, ref)
    detail = _flow_detail(tf_backend, migration["flow_uuid"])
    if detail is None:
        raise LookupError(f"the flow detail of migration {migration['id']} is missing")
    graph = _atom_graph(tf_helpers.flow_from_detail(detail))
    for atom_detail in detail:
        if atom_detail.name in graph:
            graph.nodes[atom_detail.name]["state"] = atom_detail.state
    return graph


def _migration(db: Database, ref: str) -> dict:
    migration = db.get_migration(ref) or db.latest_migration(ref)
    if migration is None:
        raise LookupError(f"no migration found for {ref}")
    return migration


def list_flows(db: Database, tf_backend) -> list[dict]:
    flows = []
    for m in db.list_migrations():
        detail = _flow_detail(tf_backend, m["flow_uuid"])
        flows.append({"migration_id": m["id"], "volume_id": m["volume_id"], "case": m["case"],
                      "migration_state": m["state"], "flow_uuid": m["flow_uuid"],
                      "flow_state": detail.state if detail else FLOW_MISSING,
                      "created_at": m["created_at"], "started_at": m["started_at"],
                      "finished_at": m["finished_at"]})
    return flows


def _result_text(result) -> str | None:
    if result is None:
        return None
    try:
        text = json.dumps(result, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(result)
    return text if len(text) <= RESULT_LIMIT else text[:RESULT_LIMIT] + "..."


def show_flow(db: Database, tf_backend, ref: str) -> dict:
    """A migration (by id, or a volume's latest) with every atom's saved state."""
    migration = _migration(db, ref)
    detail = _flow_detail(tf_backend, migration["flow_uuid"])
    shown = {"migration": migration, "flow_uuid": migration["flow_uuid"],
             "flow_state": detail.state if detail else FLOW_MISSING, "atoms": []}
    if detail is None:
        return shown
    order = list(nx.lexicographical_topological_sort(case_graph(migration["case"])))
    # TaskFlow keeps internal atoms (its store injector) beside ours: not shown.
    details = {ad.name: ad for ad in detail if not ad.name.startswith("_TaskFlow")}
    for name in order + sorted(set(details) - set(order)):
        ad = details.get(name)
        if ad is None:
            continue
        failure = None
        if ad.failure is not None:
            failure = {"type": ad.failure.to_dict()["exc_type_names"][0],
                       "message": ad.failure.exception_str,
                       "traceback": ad.failure.traceback_str}
        meta = ad.meta or {}
        shown["atoms"].append({
            "name": name, "type": type(ad).__name__.removesuffix("Detail").lower(),
            "state": ad.state, "intention": ad.intention,
            "result": None if ad.failure is not None else _result_text(ad.results),
            "failure": failure, "progress": meta.get("progress"),
            "timestamps": {k.removesuffix("-timestamp"): v for k, v in sorted(meta.items())
                           if k.endswith("-timestamp")},
        })
    return shown


def graph_to_text(graph: nx.DiGraph) -> str:
    """One line per atom in execution order, with what runs after it."""
    lines = []
    for name in nx.lexicographical_topological_sort(graph):
        state = graph.nodes[name].get("state")
        after = ", ".join(sorted(graph.successors(name))) or "(end)"
        lines.append(f"{name}{f' [{state}]' if state else ''} -> {after}")
    return "\n".join(lines) + "\n"


def _dot_id(name: str) -> str:
    """``name`` as a quoted DOT ID, so that none is read as a keyword (``node``),
    a port (``a:b``) or a number.

    Inside quotes DOT escapes only the double quote, and reads backslashes in
    pairs: a run of them just before a quote, a line end or the closing quote
    would escape it, so such a run is made even (one backslash more there).
    """
    text = re.sub(r'(\\+)(?=["\n]|\Z)',
                  lambda m: m.group(1) + "\\" * (len(m.group(1)) % 2), str(name))
    return '"' + text.replace('"', '\\"') + '"'


def _dot_label(*lines: str) -> str:
    """A quoted DOT label showing ``lines`` as written, one per line.

    Labels are escString: a backslash starts an escape (``\\n``, ``\\N``...),
    so backslashes are doubled as well as quotes escaped.
    """
    text = "\\n".join(str(line).replace("\\", "\\\\").replace('"', '\\"')
                        .replace("\n", "\\n") for line in lines)
    return f'"{text}"'


def graph_to_dot(graph: nx.DiGraph) -> str:
    """Deterministic DOT (for graphviz), colored by atom state when known.

    Written by pydot, with every name quoted and escaped here: pydot (and
    networkx's to_pydot, which also makes the graph strict and lists edges
    in adjacency order) would take ``a:b`` for a port and leave a name like
    ``node`` or a backslash unescaped.
    """
    import pydot  # only here: no other command of the CLI needs it at start-up

    dot = pydot.Dot(_dot_id(graph.graph.get("name", "flow")), graph_type="digraph",
                    rankdir="TB")
    dot.set_node_defaults(shape="box", style="rounded,filled", fillcolor="white")
    for name in nx.lexicographical_topological_sort(graph):
        state = graph.nodes[name].get("state")
        attrs = {"label": _dot_label(name, state), "fillcolor": STATE_COLORS.get(
            state, "white")} if state else {"label": _dot_label(name)}
        dot.add_node(pydot.Node(_dot_id(name), **attrs))
    for a, b in sorted(graph.edges):
        dot.add_edge(pydot.Edge(_dot_id(a), _dot_id(b)))
    return dot.to_string(indent="  ")
