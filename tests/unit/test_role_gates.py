"""Every use case that begins with a role check refuses every other role before it touches anything.

The use cases are found, not listed: each method of a context's use-case classes whose first
statement is `require_role(...)` (alone or assigned); those known today are also pinned, so one
lost from the source is noticed. Each is called unbound, with no use case object and None for
every argument, as each role the check does not name and as another context acting for no user:
it must answer PERMISSION_DENIED (with the action in its message), and can do so only if it
refuses before it reads a field, a repository or an argument. As a role the check names, the same
call gets past the check and fails on the first None, which shows the refusal was the check's.
The gRPC layer gates the same RPCs; this proves the use cases hold the line on their own (a job,
a saga step or a second front door calls them without that layer).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from common.errors import PermissionDenied
from common.security.context import ADMIN, CUSTOMER, RELATIONSHIP_MANAGER, SecurityContext
from tests.unit.contexts import acting_as

ROOT = Path(__file__).resolve().parents[2]
ROLES = {"ADMIN": ADMIN, "CUSTOMER": CUSTOMER, "RELATIONSHIP_MANAGER": RELATIONSHIP_MANAGER}
CALLERS = {
    ADMIN: SecurityContext("usr_admin", "admin", (ADMIN,)),
    CUSTOMER: SecurityContext("usr_ada", "ada", (CUSTOMER,), customer_id="cus_ada"),
    RELATIONSHIP_MANAGER: SecurityContext("usr_rm", "rm", (RELATIONSHIP_MANAGER,)),
    "another context": SecurityContext("", "", (), service="payment"),  # acting on its own, for no user
}


@dataclass(frozen=True)
class Gate:
    module: str
    cls: str
    method: str
    roles: frozenset[str]

    def __str__(self) -> str:
        return f"{self.cls}.{self.method}"


def _role_check(statement: ast.stmt) -> ast.Call | None:
    """The require_role call `statement` is (`require_role(...)`, `x = require_role(...)` or
    `x = require_role(...).user_id`), if it is one."""
    value = statement.value if isinstance(statement, ast.Expr | ast.Assign) else None
    if isinstance(value, ast.Attribute):
        value = value.value
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "require_role":
        return value
    return None


def _gates() -> list[Gate]:
    found = []
    for path in sorted(ROOT.glob("services/*/service.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for cls in (n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef)):
            for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
                body = [s for s in fn.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
                check = _role_check(body[0]) if body else None
                if check is not None:
                    roles = frozenset(ROLES[a.id] for a in check.args if isinstance(a, ast.Name))
                    found.append(Gate(module, cls.name, fn.name, roles))
    return found


GATES = _gates()


async def _call(gate: Gate) -> None:
    """The method, unbound, with None for itself and every argument; an async generator is run
    to its first step, where its check stands."""
    method: Callable[..., Any] = getattr(getattr(importlib.import_module(gate.module), gate.cls), gate.method)
    arguments = [None] * (len(inspect.signature(method).parameters))
    result = method(*arguments)
    if inspect.isasyncgen(result):
        await anext(result)
    elif inspect.isawaitable(result):
        await result


# The gates known today. The search finds more by itself (a new one is tested without a word
# here), but a gate that disappears from the source disappears from the search too, so the ones
# known are pinned: removing a role check fails this test instead of going quiet.
KNOWN = {
    "AccountUseCases.accrue_interest",
    "AccountUseCases.charge_monthly_fees",
    "AccountUseCases.deposit",
    "CustomerUseCases.assign_relationship_manager",
    "CustomerUseCases.onboard",
    "CustomerUseCases.review_kyc",
    "IdentityUseCases.audit_page",
    "IdentityUseCases.create_user",
    "IdentityUseCases.page",
    "IdentityUseCases.set_disabled",
    "IdentityUseCases.update_user",
    "InterestUseCases.get",
    "InterestUseCases.run",
    "InterestUseCases.runs",
    "LendingUseCases.approve",
    "LendingUseCases.collect",
    "LendingUseCases.disburse",
    "PaymentUseCases.reconcile",
}


def test_no_known_gate_is_lost() -> None:
    assert KNOWN <= {str(g) for g in GATES}, KNOWN - {str(g) for g in GATES}
    assert all(g.roles == {ADMIN} for g in GATES if str(g) in KNOWN), "each of these is an admin's alone"


@pytest.mark.parametrize("gate", GATES, ids=str)
async def test_every_role_the_check_does_not_name_is_refused_before_anything(gate: Gate) -> None:
    for role in sorted(set(CALLERS) - gate.roles):
        with acting_as(CALLERS[role]), pytest.raises(PermissionDenied) as refused:
            await _call(gate)
        assert refused.value.reason == "ACCESS_DENIED" and " may not " in refused.value.message, refused.value


@pytest.mark.parametrize("gate", GATES, ids=str)
async def test_a_role_the_check_names_gets_past_it(gate: Gate) -> None:
    for role in gate.roles:
        with acting_as(CALLERS[role]), pytest.raises((AttributeError, TypeError)):
            await _call(gate)  # the first None it uses, past the check
