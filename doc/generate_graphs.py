"""Regenerate doc/graphs/ from the flow factories: `.venv/bin/python doc/generate_graphs.py`.

A test fails when the committed files differ from what this writes.
"""

import os
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from volmigrate.engine import inspection  # noqa: E402
from volmigrate.flows.cases import CASES  # noqa: E402

GRAPHS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "graphs")


def generated() -> dict[str, str]:
    files = {}
    for case in CASES:
        graph = inspection.case_graph(case)
        files[f"{case}.dot"] = inspection.graph_to_dot(graph)
        files[f"{case}.txt"] = inspection.graph_to_text(graph)
    return files


if __name__ == "__main__":
    os.makedirs(GRAPHS, exist_ok=True)
    for name, text in generated().items():
        with open(os.path.join(GRAPHS, name), "w", encoding="utf-8") as f:
            f.write(text)
        print(os.path.join("doc", "graphs", name))
