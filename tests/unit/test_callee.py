"""One translation of another context's refusal into the caller's terms (common/callee.py): silence
passes as it came, a refusal of authority is told apart (it is not the request id's answer) and
reads in the caller's words, any other refusal keeps its reason."""

from __future__ import annotations

import pytest

from common.callee import CalleeRefused, callee_refusals, denial, reason_of
from common.errors import (
    AppError,
    DeadlineExceeded,
    FieldViolation,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    Unauthenticated,
    Unavailable,
    ValidationFailed,
)


@pytest.mark.parametrize("silence", [Unavailable("DOWN", "no answer"), DeadlineExceeded("LATE", "no answer in time")])
def test_silence_passes_as_it_came(silence: AppError) -> None:
    with pytest.raises(type(silence)) as passed, callee_refusals():
        raise silence
    assert passed.value is silence


@pytest.mark.parametrize(
    ("error", "reason", "of_authority"),
    [
        (Unauthenticated("TOKEN_REVOKED", "revoked"), "TOKEN_REVOKED", True),
        (PermissionDenied("INTERNAL_ACCOUNT", "the bank's own"), "INTERNAL_ACCOUNT", True),
        (PreconditionFailed("INSUFFICIENT_FUNDS", "short"), "INSUFFICIENT_FUNDS", False),
        (NotFound("hold request", "r1"), "NOT_FOUND", False),
        (ValidationFailed([FieldViolation("amount", "too many decimals")]), "INVALID_ARGUMENT", False),
    ],
)
def test_a_refusal_is_told_apart_by_what_it_refused(error: AppError, reason: str, of_authority: bool) -> None:
    with pytest.raises(CalleeRefused) as refused, callee_refusals():
        raise error
    assert (refused.value.error, refused.value.reason, refused.value.of_authority) == (error, reason, of_authority)
    assert reason_of(error) == reason


def test_a_refusal_of_authority_reads_in_the_callers_words_but_a_refused_token_stays_one() -> None:
    denied = denial(PermissionDenied("HOLD_OWNED_BY_CONTEXT", "theirs", {"hold_id": "h1"}), "not allowed", {"loan_id": "l1"})
    assert (type(denied), denied.reason, denied.message, denied.metadata) == (
        PermissionDenied,
        "ACCESS_DENIED",
        "not allowed",
        {"loan_id": "l1"},
    )
    again = denial(Unauthenticated("TOKEN_REVOKED", "the token was revoked", {"user_id": "u1"}), "not allowed")
    assert (type(again), again.reason, again.message, again.metadata) == (
        Unauthenticated,
        "TOKEN_REVOKED",
        "the token was revoked",
        {"user_id": "u1"},
    )
