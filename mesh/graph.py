"""The context map, drawn from the DI declarations (never by hand, so it cannot drift).

Nodes are contexts with the gRPC services they export; a solid arrow is an imported stub (a
call), labelled with the service and the RPCs the import names (the same list the callee allows
from that context); a dotted arrow goes from the publisher of an event to each context that
consumes it. The infrastructure context, which every context imports, is left out.
Mermaid for documents that render it; DOT, rendered to SVG by graphviz's `dot`, for a picture.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from common.audit import PLATFORM_EVENTS
from common.di import context_spec
from common.grpc.services import service_of_stub, services_of_servicer

INFRASTRUCTURE = "infrastructure"


@dataclass(frozen=True)
class Node:
    name: str
    description: str
    services: tuple[str, ...]
    publishes: tuple[str, ...]


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str
    kind: str  # "call" or "event"
    methods: tuple[str, ...] = ()  # of a call: the imported RPCs


def _wrapped(methods: tuple[str, ...], per_line: int = 3) -> list[str]:
    return [", ".join(methods[i : i + per_line]) for i in range(0, len(methods), per_line)]


def context_map(modules: Sequence[type]) -> tuple[list[Node], list[Edge]]:
    specs = [context_spec(m) for m in modules]
    nodes = [
        Node(
            s.name,
            s.description,
            tuple(b.full_name.rsplit(".", 1)[-1] for e in s.exports for b in services_of_servicer(e)),
            tuple(event.DESCRIPTOR.name for event in s.publishes),
        )
        for s in specs
    ]
    edges = []
    for spec in specs:
        for imported in spec.imports:
            service = service_of_stub(imported.type)
            if imported.from_context != INFRASTRUCTURE and service is not None:
                edges.append(
                    Edge(spec.name, imported.from_context, service.full_name.rsplit(".", 1)[-1], "call", tuple(imported.methods))
                )
    publishers = {event: spec.name for spec in specs for event in spec.publishes}
    for spec in specs:
        for event in spec.consumes:
            if event in PLATFORM_EVENTS:
                continue
            source = publishers.get(event, "?")
            edges.append(Edge(source, spec.name, event.DESCRIPTOR.name, "event"))
    return nodes, edges


def mermaid(modules: Sequence[type]) -> str:
    nodes, edges = context_map(modules)
    lines = ["flowchart LR"]
    for node in nodes:
        services = "<br/>".join(node.services) or "(no service)"
        events = f"<br/><i>publishes {', '.join(node.publishes)}</i>" if node.publishes else ""
        lines.append(f'  {node.name}["<b>{node.name}</b><br/>{services}{events}"]')
    for edge in edges:
        arrow = "-->" if edge.kind == "call" else "-.->"
        label = "<br/>".join([edge.label, *_wrapped(edge.methods)])
        lines.append(f"  {edge.source} {arrow}|{label}| {edge.target}")
    return "\n".join(lines) + "\n"


def dot(modules: Sequence[type]) -> str:
    nodes, edges = context_map(modules)
    lines = [
        "digraph contexts {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    for node in nodes:
        services = "\\n".join(node.services) or "(no service)"
        events = f"\\npublishes: {', '.join(node.publishes)}" if node.publishes else ""
        lines.append(f'  "{node.name}" [label="{node.name}\\n{services}{events}", tooltip="{node.description}"];')
    for edge in edges:
        style = "solid" if edge.kind == "call" else "dashed"
        label = "\\n".join([edge.label, *_wrapped(edge.methods)])
        lines.append(f'  "{edge.source}" -> "{edge.target}" [label="{label}", style={style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg(modules: Sequence[type]) -> str:
    """The picture, by graphviz (scripts/bootstrap installs it)."""
    binary = shutil.which("dot")
    if binary is None:
        raise RuntimeError("graphviz's 'dot' is missing: run scripts/bootstrap (it installs graphviz from Debian)")
    return subprocess.run([binary, "-Tsvg"], input=dot(modules), capture_output=True, text=True, check=True, timeout=60).stdout
