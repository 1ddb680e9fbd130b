"""DOT export of flow graphs: any atom name gives valid DOT that graphviz reads back."""

import html
import re
import shutil
import subprocess

import networkx as nx
import pytest

from volmigrate.engine import inspection

# Keywords, a port separator, quotes, backslashes (before a quote, at the end,
# before a line end), DOT punctuation, an edge operator, non-ASCII, nothing.
HOSTILE = ["node", "a:b", 'with "quotes"', "back\\slash", "graph", "1.5", "ünï cödé",
           "semi;colon{}[]=", "x->y", "end\\", 'q\\"x', 'two\\\\"', "line\nbreak",
           "cont\\\nx", "<html>", ""]


def _chain(names, name='flow "odd"') -> nx.DiGraph:
    graph = nx.DiGraph(name=name)
    for i, atom in enumerate(names):
        graph.add_node(atom, **({"state": "SUCCESS"} if i % 2 else {}))
        if i:
            graph.add_edge(names[i - 1], atom)
    return graph


def test_names_are_always_quoted_and_escaped():
    text = inspection.graph_to_dot(_chain(["node", 'say "hi"', "a:b"]))
    assert text.splitlines() == [
        'digraph "flow \\"odd\\"" {',
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fillcolor=white];',
        '  "node" [label="node"];',
        '  "say \\"hi\\"" [label="say \\"hi\\"\\nSUCCESS", fillcolor=palegreen];',
        '  "a:b" [label="a:b"];',
        '  "node" -> "say \\"hi\\"";',
        '  "say \\"hi\\"" -> "a:b";',
        "}"]


def test_label_backslashes_are_shown_as_written():
    text = inspection.graph_to_dot(_chain(["x\\ny"]))
    assert '"x\\ny" [label="x\\\\ny"];' in text  # the ID is literal; the label escapes


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz (dot) is not installed")
def test_graphviz_reads_every_hostile_name_back():
    out = subprocess.run(["dot", "-Tsvg"], input=inspection.graph_to_dot(_chain(HOSTILE)),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    texts = [html.unescape(t) for t in re.findall(r"<text[^>]*>(.*?)</text>", out.stdout)]
    shown = [t for t in texts if t != "SUCCESS"]
    # Every label is the atom's name exactly (graphviz draws each line as its own text).
    expected = [line for name in HOSTILE for line in name.split("\n") if line]
    assert shown == expected
    # No name merged with another, none split into two nodes (a port, an edge).
    assert out.stdout.count('class="node"') == len(HOSTILE)
    assert out.stdout.count('class="edge"') == len(HOSTILE) - 1
