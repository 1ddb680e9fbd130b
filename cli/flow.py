"""`volmigrate flow list|show|graph`: the flows of migrations, for developers.

Reading flows needs TaskFlow (its persistence and its graphs), which no other
reading command loads: this module is imported only when `flow` runs.
"""

from __future__ import annotations

import argparse
import sys

from volmigrate.cli import output
from volmigrate.engine import inspection, persistence


def flow(svc, args: argparse.Namespace) -> int:
    """Exit 0, or 1 when the migration or case asked for is unknown."""
    backend = persistence.open_backend(svc.db.engine)
    try:
        if args.flow_action == "list":
            flows = inspection.list_flows(svc.db, backend)
            if args.format == "json":
                output.print_json(flows)
            else:
                output.print_rows(flows, ("migration_id", "volume_id", "case", "flow_state",
                                          "migration_state", "started_at", "finished_at"))
        elif args.flow_action == "show":
            _show(inspection.show_flow(svc.db, backend, args.migration), args.format)
        else:
            print_graph(inspection.flow_graph(args.target, svc.db, backend), args.format)
    except LookupError as exc:
        output.error(f"volmigrate: {exc}")
        return 1
    return 0


def _show(shown: dict, fmt: str) -> None:
    if fmt == "json":
        output.print_json(shown)
        return
    output.print_record(shown["migration"], title="migration")
    output.say(f"flow {shown['flow_uuid']}: {shown['flow_state']}")
    output.print_rows(shown["atoms"], ("name", "state", "intention", "progress", "result"))
    for atom in shown["atoms"]:
        if atom["failure"]:
            output.say(f"\n{atom['name']} failed: {atom['failure']['type']}: "
                       f"{atom['failure']['message']}\n"
                       f"{atom['failure']['traceback']}", keep="\n")


def case_graph(case: str, fmt: str) -> int:
    """A case's graph: it needs no service, nor a database."""
    print_graph(inspection.case_graph(case), fmt)
    return 0


def print_graph(graph, fmt: str) -> None:
    text = inspection.graph_to_dot(graph) if fmt == "dot" else inspection.graph_to_text(graph)
    sys.stdout.write(output.safe(text, keep="\n"))
