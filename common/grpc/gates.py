"""Who may call a method at all, checked by the platform before the request is looked at.

A method that only some roles may call (an admin's batch run, say) is marked on its servicer with
`@gated(ADMIN, action=...)`; the platform then refuses anyone else right after authenticating
them, before the contract's field rules and the handler's validation: an unauthorised caller gets
PERMISSION_DENIED whatever the body, learns nothing of the rules it broke, and costs nothing (no
date arithmetic, no decoding of a list). The use case still authorizes: the rule lives there,
beside what it guards; the gate only makes the refusal come first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from common.security.policy import require_role

H = TypeVar("H", bound=Callable[..., Any])
_MARK = "og_role_gate"


@dataclass(frozen=True)
class RoleGate:
    """The roles one of which the caller must hold (as `require_role` judges them)."""

    roles: tuple[str, ...]
    action: str  # what the refusal says the caller may not do
    started_by: str = ""  # a context whose own work (no user behind it) passes too

    def check(self) -> None:
        require_role(*self.roles, action=self.action, or_started_by=self.started_by)


def gated(*roles: str, action: str, or_started_by: str = "") -> Callable[[H], H]:
    """Marks a servicer method: callers without one of `roles` (nor, with `or_started_by`, that
    context acting on its own) are refused before anything else."""
    if not roles:
        raise ValueError("a gate names at least one role")

    def mark(handler: H) -> H:
        setattr(handler, _MARK, RoleGate(roles, action, or_started_by))
        return handler

    return mark


def gate_of(handler: grpc.RpcMethodHandler) -> RoleGate | None:
    """The gate of a registered handler's servicer method (generated code registers it bound)."""
    behavior = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    gate = getattr(behavior, _MARK, None)
    return gate if isinstance(gate, RoleGate) else None
