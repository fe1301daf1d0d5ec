"""Another context's refusal of a call, in the caller's terms: written once for every use case that
calls another context through its ports, whichever context that is.

Besides doing what it was asked, a callee answers in one of three ways, and for a step named by
a request id they mean different things:

- Silence (UNAVAILABLE, DEADLINE_EXCEEDED): nothing is known; the step may have acted. It passes
  through as it came, for the caller to keep what it started and finish it later.
- A refusal of authority (UNAUTHENTICATED, PERMISSION_DENIED): about who asked. Every server
  judges the caller before it looks at a request id (the platform authenticates before any
  handler runs, and a use case authorizes first), so this refusal says nothing of what an
  identical request with the same id did: a twin copy may have acted with its authority. It is
  final for the request id only once the caller has looked the id up as itself, by a lookup that
  closes an id that did nothing (then no copy can act on it later). To the caller's own caller it
  reads in the caller's words (`denial`).
- Any other refusal (FAILED_PRECONDITION, NOT_FOUND, ...): the callee's answer for that request
  id, for good; `reason_of` names it for the caller's record.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from common.errors import (
    AppError,
    DeadlineExceeded,
    NotFound,
    PermissionDenied,
    ReasonedError,
    Unauthenticated,
    Unavailable,
    ValidationFailed,
)

SILENCE = (Unavailable, DeadlineExceeded)
AUTHORITY = (Unauthenticated, PermissionDenied)
_UNREASONED: tuple[tuple[type[AppError], str], ...] = ((NotFound, "NOT_FOUND"), (ValidationFailed, "INVALID_ARGUMENT"))


def reason_of(refused: AppError) -> str:
    """The refusal's UPPER_SNAKE reason; for the kinds that carry none, their status's name."""
    if isinstance(refused, ReasonedError):
        return refused.reason
    return next((name for kind, name in _UNREASONED if isinstance(refused, kind)), type(refused).__name__)


class CalleeRefused(Exception):
    """A callee refused a step (it did not stay silent): `error` as it answered, `reason` its name."""

    def __init__(self, error: AppError) -> None:
        super().__init__(reason_of(error))
        self.error = error
        self.reason = str(self)

    @property
    def of_authority(self) -> bool:
        """Refused for who asked, not for what was asked: final only once the request id is looked up."""
        return isinstance(self.error, AUTHORITY)


@contextmanager
def callee_refusals() -> Iterator[None]:
    """Within the block, a callee's refusal is CalleeRefused; its silence passes through as it came."""
    try:
        yield
    except SILENCE:
        raise
    except AppError as refused:
        raise CalleeRefused(refused) from refused


def denial(refused: AppError, message: str, metadata: dict[str, str] | None = None) -> Unauthenticated | PermissionDenied:
    """A callee's refusal of authority as the caller answers it: UNAUTHENTICATED as the callee
    answered it (the token refused is the caller's own, relayed: only a new one helps), anything
    else PERMISSION_DENIED ACCESS_DENIED in the caller's words (the callee's rules and reasons are
    its own; the caller's client knows only the caller's contract)."""
    if isinstance(refused, Unauthenticated):
        return Unauthenticated(refused.reason, refused.message, refused.metadata)
    return PermissionDenied("ACCESS_DENIED", message, metadata)
