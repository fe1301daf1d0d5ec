"""Who may move the bank's own accounts (services/account/domain.py), for every kind, currency and
mover: generated from the contract table itself, so a kind added without a rule is caught."""

from __future__ import annotations

from collections.abc import Callable
from itertools import product

import pytest

from common.errors import PermissionDenied
from common.money import CURRENCY_EXPONENTS
from services.account.domain import (
    MOVED_BY,
    OWN_BOOKS,
    InternalAccount,
    internal_kind,
    require_movable,
    require_party,
    require_reversible,
)

# Every context that calls the account context, and an admin acting through the account context.
MOVERS = ("account", "payment", "lending", "interest", "customer", "identity", "notification", "")
INTERNAL = [(kind, currency) for kind, currency in product(InternalAccount, sorted(CURRENCY_EXPONENTS))]


def _refused(check: Callable[[], object]) -> str | None:
    """The refusal's reason, or None when `check` allows."""
    try:
        check()
    except PermissionDenied as refused:
        assert refused.reason == "INTERNAL_ACCOUNT" and refused.metadata["account_id"], "a detailed refusal"
        return refused.reason
    return None


@pytest.mark.parametrize(("kind", "currency"), INTERNAL)
def test_each_internal_account_is_known_by_its_id(kind: InternalAccount, currency: str) -> None:
    assert internal_kind(kind.account_id(currency)) is kind
    assert internal_kind(f"acc_customer_{currency}") is None


@pytest.mark.parametrize(("kind", "currency"), INTERNAL)
def test_an_internal_account_moves_only_for_the_contexts_its_contract_names(kind: InternalAccount, currency: str) -> None:
    account_id = kind.account_id(currency)
    for mover in MOVERS:
        allowed = mover in MOVED_BY.get(kind, frozenset())
        assert _refused(lambda m=mover: require_movable(["acc_ada", account_id], m)) == (
            None if allowed else "INTERNAL_ACCOUNT"
        ), (
            kind,
            mover,
        )


@pytest.mark.parametrize(("kind", "currency"), INTERNAL)
def test_a_reversal_of_the_account_contexts_own_books_is_the_banks_and_any_other_as_the_movement(
    kind: InternalAccount, currency: str
) -> None:
    account_id = kind.account_id(currency)
    for mover in MOVERS:
        allowed = kind in OWN_BOOKS or mover in MOVED_BY.get(kind, frozenset())
        assert _refused(lambda m=mover: require_reversible([account_id, "acc_ada"], m)) == (
            None if allowed else "INTERNAL_ACCOUNT"
        ), (
            kind,
            mover,
        )


def test_customer_accounts_move_and_reverse_for_anyone_the_use_case_let_through() -> None:
    for mover in MOVERS:
        require_movable(["acc_ada", "acc_bob"], mover)
        require_reversible(["acc_ada", "acc_bob"], mover)


@pytest.mark.parametrize(("kind", "currency"), INTERNAL)
def test_no_internal_account_is_a_party_to_a_payment(kind: InternalAccount, currency: str) -> None:
    assert _refused(lambda: require_party(kind.account_id(currency))) == "INTERNAL_ACCOUNT"
    assert _refused(lambda: require_party(f"acc_ada_{currency}")) is None
