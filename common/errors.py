"""Errors that application and domain code raise, free of any transport.

The gRPC layer maps each to a canonical status code with google.rpc details (common.grpc.status);
domain modules raise them without importing grpc.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldViolation:
    """One bad input field, named by its path in the request (e.g. "document.number")."""

    field: str
    description: str
    reason: str = ""  # UPPER_SNAKE (AIP-193): FIELD_REQUIRED, ...; "" is FIELD_INVALID


class AppError(Exception):
    """Base of errors that are part of an operation's contract (never a bug)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationFailed(AppError):
    """Bad input: INVALID_ARGUMENT with BadRequest field violations."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = list(violations)
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(f"invalid request: {summary}")


class FieldRefused(ValidationFailed):
    """A field refused on the state it was compared with (a current password that is not the stored
    one): INVALID_ARGUMENT like any bad input, but decided in the unit of work that read the state,
    so kept on the request's idempotency key like a FAILED_PRECONDITION (a replay, once the state
    agrees with the field, hears the refusal again instead of making the change)."""


class NotFound(AppError):
    """The named resource does not exist: NOT_FOUND with ResourceInfo."""

    def __init__(self, resource_type: str, resource_id: str) -> None:
        self.resource_type = resource_type
        self.resource_id = resource_id
        super().__init__(f"{resource_type} '{resource_id}' not found")


@dataclass
class _Reasoned:
    reason: str
    metadata: dict[str, str] = field(default_factory=dict)


class ReasonedError(AppError):
    """An error with an UPPER_SNAKE reason and metadata, sent as google.rpc.ErrorInfo."""

    def __init__(self, reason: str, message: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.metadata = dict(metadata or {})


class PreconditionFailed(ReasonedError):
    """A business rule refused the operation: FAILED_PRECONDITION."""


class AlreadyExists(ReasonedError):
    """The resource (or the idempotency key with other content) exists: ALREADY_EXISTS."""


class Aborted(ReasonedError):
    """A concurrent change won; the caller may retry the whole read-modify-write: ABORTED."""


class Unauthenticated(ReasonedError):
    """No valid credentials: UNAUTHENTICATED."""


class PermissionDenied(ReasonedError):
    """Credentials valid, action not allowed: PERMISSION_DENIED."""


class Unavailable(ReasonedError):
    """A dependency is down; retrying later may succeed: UNAVAILABLE."""


class ResourceExhausted(ReasonedError):
    """Too much, too fast, from this caller: RESOURCE_EXHAUSTED with RetryInfo (`retry_after`
    seconds), so that a client waits instead of hammering."""

    def __init__(self, reason: str, message: str, metadata: dict[str, str] | None = None, retry_after: float = 1.0) -> None:
        super().__init__(reason, message, metadata)
        self.retry_after = retry_after


class DeadlineExceeded(ReasonedError):
    """The caller's deadline ran out before the answer: DEADLINE_EXCEEDED. What was under way may
    or may not have happened; a retry with the same request_id tells."""
