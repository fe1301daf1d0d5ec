"""What ARCHITECTURE.md says about the code and a machine can check, checked (the import rules
are import-linter's, run by scripts/test): every context's rooms are the rooms the map lists,
repositories decide nothing, use cases hold the units of work, and no file outgrows the size rule.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTEXTS = sorted(p.parent.name for p in ROOT.glob("services/*/module.py") if p.parent.name != "velocitypay")
MAX_LINES = 450

# The repository room: the modules that load and save (ARCHITECTURE.md lists them).
REPOSITORY_ROOM = {
    "repository",
    "tables",
    "rows",
    "servicing_sql",
    "postings",
    "holds",
    "charges",
    "bulk_postings",
    "bulk_fees",
    "statements",
}
# What only a decision raises: a refusal of the caller, their input or the state. A repository
# may raise what a write itself finds (Aborted: a conditional write lost; AlreadyExists: a unique
# index refused), never these.
DECISIONS = {"PreconditionFailed", "PermissionDenied", "NotFound", "FieldRefused", "ValidationFailed", "Settled"}
DECIDING = {
    "services.%s.domain",
    "services.%s.servicing",
    "services.%s.schedule",
    "services.%s.reconciliation",
    "services.%s.narrative",
}

# Contexts whose repositories still decide, each with where: a ratchet. The test fails for a
# context listed here that no longer breaks the rule (take it off), so the list only shrinks.
NOT_YET: dict[str, str] = {}


def _rooms(context: str) -> set[str]:
    return {p.stem for p in (ROOT / "services" / context).glob("*.py") if p.stem != "__init__"}


def _documented_rooms() -> set[str]:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    section = text[text.index("## Where each kind of code lives") : text.index("## How a request flows")]
    return set(re.findall(r"`([a-z_]+)\.py`", section))


def test_every_room_is_on_the_map_and_every_room_on_the_map_exists() -> None:
    existing = set().union(*(_rooms(c) for c in CONTEXTS))
    documented = _documented_rooms()
    assert existing - documented == set(), "rooms the map does not name"
    assert documented - existing == set(), "rooms the map names that no context has"


def _violations(context: str) -> list[str]:
    """How the repository room of `context` decides: refusals raised, rules imported, callbacks
    into the use case, or an operation written as a Protocol, a class and a function."""
    found = []
    for path in sorted((ROOT / "services" / context).glob("*.py")):
        if path.stem not in REPOSITORY_ROOM:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Raise) and node.exc is not None:
                raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                name = raised.id if isinstance(raised, ast.Name) else getattr(raised, "attr", "")
                if name in DECISIONS or name.startswith(("require_", "check_")):
                    found.append(f"{where} raises {name}")
            if isinstance(node, ast.ImportFrom) and node.module in {m % context for m in DECIDING}:
                rules = [a.name for a in node.names if a.name[0].islower()]
                if rules:
                    found.append(f"{where} imports the rules {rules}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in {"decide", "schedule"}:
                found.append(f"{where} calls back .{node.func.attr}()")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr.startswith("require_"):
                found.append(f"{where} calls {node.func.attr}()")
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "") == "Protocol" for b in node.bases):
                found.append(f"{where} declares the Protocol {node.name}")
    return found


@pytest.mark.parametrize("context", CONTEXTS)
def test_repositories_decide_nothing(context: str) -> None:
    violations = _violations(context)
    if context in NOT_YET:
        assert violations, f"{context}'s repository decides nothing any more: take it off NOT_YET"
    else:
        assert violations == [], violations


def _uses_units(context: str) -> bool:
    return "Units" in (ROOT / "services" / context / "module.py").read_text()


@pytest.mark.parametrize("context", [c for c in CONTEXTS if (ROOT / "services" / c / "repository.py").exists()])
def test_use_cases_hold_the_unit_of_work(context: str) -> None:
    """A context with a repository provides its Units, and its use cases reach the database
    through them only (no repository object that opens its own transactions)."""
    if context in NOT_YET:
        assert not _uses_units(context), f"{context} has its units: take it off NOT_YET"
        return
    assert _uses_units(context)
    for path in (ROOT / "services" / context).glob("*.py"):
        if path.stem in {"service", "operations", "repaying", "disbursement", "movements", "events"}:
            text = path.read_text()
            assert "._db." not in text and "Repository" not in text, f"{path.name} reaches the database around its units"


def test_no_file_outgrows_the_size_rule() -> None:
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for top in ("common", "services", "mesh", "kernel")
        for p in (ROOT / top).rglob("*.py")
    }
    assert {f: n for f, n in sizes.items() if n > MAX_LINES} == {}
