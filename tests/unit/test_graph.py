"""`ogpgy graph` draws the context map from the DI declarations."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

from mesh import graph
from mesh.embedded import ALL_MODULES, CONTEXT_NAMES


def test_edges_come_from_imports_and_event_declarations() -> None:
    nodes, edges = graph.context_map(ALL_MODULES)
    assert [n.name for n in nodes] == list(CONTEXT_NAMES)
    calls = {(e.source, e.target, e.label) for e in edges if e.kind == "call"}
    assert {
        ("payment", "account", "AccountService"),
        ("lending", "account", "AccountService"),
        ("interest", "account", "AccountService"),
        ("payment", "velocitypay", "PaymentNetworkService"),
    } <= calls
    assert not any(e.target == "infrastructure" for e in edges)
    interest = next(e for e in edges if (e.source, e.target) == ("interest", "account"))
    assert interest.methods == ("AccrueInterest", "ChargeMonthlyFees"), (
        "the edge names the RPCs the import declares, nothing more"
    )
    events = {(e.source, e.target, e.label) for e in edges if e.kind == "event"}
    assert ("customer", "account", "CustomerOnboarded") in events
    payment = next(n for n in nodes if n.name == "payment")
    assert payment.services == ("PaymentService", "BulkPaymentService") and "PaymentCompleted" in payment.publishes


def test_mermaid_and_svg_from_the_command_line() -> None:
    mermaid = subprocess.run([sys.executable, "-m", "mesh.cli", "graph"], capture_output=True, text=True, check=True).stdout
    assert (
        mermaid.startswith("flowchart LR")
        and "interest -->|AccountService<br/>AccrueInterest, ChargeMonthlyFees| account" in mermaid
    )
    assert "customer -.->|CustomerOnboarded| account" in mermaid
    svg = subprocess.run(
        [sys.executable, "-m", "mesh.cli", "graph", "--format", "svg"], capture_output=True, text=True, check=True
    ).stdout
    texts = {t.text for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")}
    assert set(CONTEXT_NAMES) <= texts and "AccountService" in texts and "AccrueInterest, ChargeMonthlyFees" in texts
