"""The ledger's refusals, decided by Account, Hold and Transfer on the state they hold: no database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from common.errors import NotFound, PreconditionFailed
from common.money import MAX_MINOR, Money
from services.account.domain import (
    Account,
    AccountFeatures,
    AccountStatus,
    AccountType,
    ChargeOrder,
    Hold,
    HoldStatus,
    InternalAccount,
    Transfer,
    TransferOrder,
    fee_chunk_overlap,
    fee_due,
    month_has_ended,
    require_holdable,
    require_posting,
)

AT = datetime(2026, 6, 15, 12, tzinfo=UTC)


def eur(minor: int) -> Money:
    return Money("EUR", minor)


def account(
    balance: int = 0, held: int = 0, *, overdraft: int = 0, type_: AccountType = AccountType.PERSONAL_CHECKING
) -> Account:
    features = AccountFeatures(overdraft_protection=overdraft > 0, overdraft_limit=overdraft)
    return Account("acc_1", "cus_1", type_, AccountStatus.OPEN, "EUR", features, balance, held, AT)


def reason_of(action: Callable[[], object]) -> str:
    """The reason of the refusal `action` raises (it must raise one)."""
    with pytest.raises(PreconditionFailed) as caught:
        action()
    return caught.value.reason


# --- Account ------------------------------------------------------------------------------------


def test_a_debit_within_the_available_balance_is_allowed_and_one_minor_unit_more_is_not() -> None:
    a = account(balance=10_000, held=2_500)
    a.require_debit(eur(7_500))
    assert reason_of(lambda: a.require_debit(eur(7_501))) == "INSUFFICIENT_FUNDS"


def test_insufficient_funds_says_what_is_available() -> None:
    with pytest.raises(PreconditionFailed) as caught:
        account(balance=10_000, held=2_500).require_debit(eur(9_000))
    assert caught.value.metadata == {"account_id": "acc_1", "available": "75.00"}


def test_an_overdraft_lowers_the_floor_by_its_limit() -> None:
    a = account(balance=1_000, overdraft=5_000)
    assert a.floor == -5_000 and a.available == 6_000
    a.require_debit(eur(6_000))
    assert reason_of(lambda: a.require_debit(eur(6_001))) == "INSUFFICIENT_FUNDS"


def test_the_holds_being_captured_are_freed_for_their_own_debit() -> None:
    a = account(balance=10_000, held=10_000)
    assert reason_of(lambda: a.require_debit(eur(4_000))) == "INSUFFICIENT_FUNDS"
    a.require_debit(eur(4_000), release=4_000)


def test_internal_accounts_have_no_floor_but_the_ledger_limit() -> None:
    bank = account(balance=0, type_=AccountType.INTERNAL)
    assert bank.floor is None
    bank.require_debit(eur(MAX_MINOR))
    assert reason_of(lambda: replace(bank, balance=-1).require_debit(eur(MAX_MINOR))) == "BALANCE_LIMIT_EXCEEDED"


def test_an_internal_accounts_available_balance_is_its_balance_less_its_holds() -> None:
    """No floor: nothing is added to or taken from what the bank's own account may move."""
    assert account(balance=-500, held=100, type_=AccountType.INTERNAL).available == -600


def test_a_hold_on_an_internal_account_is_bounded_by_the_ledger_limit_alone() -> None:
    """A loan's disbursement reserves the treasury's funds, whatever its (negative) balance, up to
    the limit itself."""
    treasury = account(balance=-1_000, type_=AccountType.INTERNAL)
    treasury.require_reserve(eur(MAX_MINOR))
    replace(treasury, held=MAX_MINOR - 1).require_reserve(eur(1))
    assert reason_of(lambda: replace(treasury, held=MAX_MINOR).require_reserve(eur(1))) == "BALANCE_LIMIT_EXCEEDED"


def test_a_credit_may_not_carry_a_balance_past_the_ledger_limit() -> None:
    account(balance=MAX_MINOR - 1).require_credit(eur(1))
    assert reason_of(lambda: account(balance=MAX_MINOR).require_credit(eur(1))) == "BALANCE_LIMIT_EXCEEDED"


def test_money_moves_only_through_an_open_account_in_its_currency() -> None:
    closed = replace(account(balance=100), status=AccountStatus.CLOSED)
    assert reason_of(lambda: closed.require_credit(eur(1))) == "ACCOUNT_CLOSED"
    assert reason_of(lambda: closed.require_debit(eur(1))) == "ACCOUNT_CLOSED"
    assert reason_of(lambda: account(balance=100).require_debit(Money("USD", 1))) == "CURRENCY_MISMATCH"
    assert reason_of(lambda: account().require_reserve(Money("GBP", 1))) == "CURRENCY_MISMATCH"


def test_a_hold_reserves_from_what_is_available() -> None:
    a = account(balance=5_000, held=1_000)
    a.require_reserve(eur(4_000))
    assert reason_of(lambda: a.require_reserve(eur(4_001))) == "INSUFFICIENT_FUNDS"
    bank = account(held=MAX_MINOR, type_=AccountType.INTERNAL)
    assert reason_of(lambda: bank.require_reserve(eur(1))) == "BALANCE_LIMIT_EXCEEDED"


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (account(type_=AccountType.INTERNAL), "INTERNAL_ACCOUNT"),
        (account(balance=1), "ACCOUNT_BALANCE_NOT_ZERO"),
        (account(held=1), "ACCOUNT_HAS_OPEN_HOLDS"),
    ],
)
def test_only_a_customer_account_at_zero_without_holds_closes(state: Account, reason: str) -> None:
    assert reason_of(state.require_closable) == reason


def test_an_empty_account_closes_once() -> None:
    account().require_closable()
    closed = replace(account(), status=AccountStatus.CLOSED)
    assert reason_of(closed.require_closable) == "ACCOUNT_CLOSED"


def test_the_stored_floor_is_the_accounts_own() -> None:
    overdraft = AccountFeatures(overdraft_protection=True, overdraft_limit=20_000)
    with_overdraft = replace(account(), features=overdraft)
    assert with_overdraft.floor == -20_000
    assert replace(account(), type=AccountType.PERSONAL_SAVINGS).floor == 0
    assert replace(with_overdraft, type=AccountType.INTERNAL).floor is None


def test_a_fee_is_due_only_for_a_month_the_balance_fell_below_the_minimum() -> None:
    assert fee_due(monthly_fee=500, minimum_balance=100_000, lowest_balance=99_999)
    assert not fee_due(monthly_fee=500, minimum_balance=100_000, lowest_balance=100_000)
    assert not fee_due(monthly_fee=0, minimum_balance=100_000, lowest_balance=0)
    assert fee_due(monthly_fee=1, minimum_balance=100_000, lowest_balance=0), "a fee of one cent is a fee"


def test_a_charge_debits_the_total_of_its_lines() -> None:
    one = ChargeOrder("chg-1", "acc_1", ((InternalAccount.FEE_INCOME, eur(250)),), "fee")
    assert one.total == eur(250)
    two = ChargeOrder(
        "chg-2", "acc_1", ((InternalAccount.INTEREST_INCOME, eur(600)), (InternalAccount.LOAN_PRINCIPAL, eur(9_400))), ""
    )
    assert two.total == eur(10_000)


# --- Hold ---------------------------------------------------------------------------------------


def hold(status: HoldStatus = HoldStatus.PLACED) -> Hold:
    return Hold("hld_1", "acc_1", "acc_2", eur(10_000), status, "rent")


def test_a_capture_posts_at_most_what_is_held_and_all_of_it_by_default() -> None:
    assert hold().capture(None) == eur(10_000)
    assert hold().capture(eur(2_500)) == eur(2_500)
    assert reason_of(lambda: hold().capture(eur(10_001))) == "CAPTURE_EXCEEDS_HOLD"
    assert reason_of(lambda: hold().capture(Money("USD", 1))) == "CURRENCY_MISMATCH", "the currency, not the amount"


@pytest.mark.parametrize("status", [HoldStatus.CAPTURED, HoldStatus.RELEASED])
def test_a_hold_resolves_once(status: HoldStatus) -> None:
    assert reason_of(lambda: hold(status).capture(None)) == "HOLD_ALREADY_RESOLVED"
    assert reason_of(hold(status).require_placed) == "HOLD_ALREADY_RESOLVED"


def test_a_hold_placed_by_a_context_is_resolved_by_that_context_alone() -> None:
    assert not hold().resolved_only_by_owner()
    assert replace(hold(), owner_context="payment").resolved_only_by_owner()


# --- Transfer -----------------------------------------------------------------------------------


def transfer(**changes: str) -> Transfer:
    return replace(Transfer("trf_1", "acc_1", "acc_2", eur(4_200), "rent", AT), **changes)


def test_a_reversal_moves_the_same_amount_back() -> None:
    order = transfer().reversal("")
    assert (order.debit_account_id, order.credit_account_id, order.amount) == ("acc_2", "acc_1", eur(4_200))
    assert order.reverses_transfer_id == "trf_1" and order.description == "reversal of trf_1"
    assert transfer().reversal("refund").description == "refund"


def test_a_transfer_is_reversed_once_and_a_reversal_never() -> None:
    assert reason_of(lambda: transfer(reversed_by="trf_2").reversal("")) == "TRANSFER_ALREADY_REVERSED"
    assert reason_of(lambda: transfer(reverses_transfer_id="trf_0").reversal("")) == "TRANSFER_IS_A_REVERSAL"


@pytest.mark.parametrize(
    ("month", "today", "ended"),
    [
        (date(2026, 11, 30), date(2026, 12, 1), True),
        (date(2026, 12, 1), date(2026, 12, 31), False),  # the month of today has not ended
        (date(2025, 12, 31), date(2026, 1, 1), True),  # across a year
        (date(2027, 1, 1), date(2026, 12, 7), False),
        (date(9999, 12, 1), date(9999, 12, 31), False),  # no date arithmetic: the calendar's end is a month
    ],
)
def test_a_months_fees_are_due_once_the_month_has_ended(month: date, today: date, ended: bool) -> None:
    assert month_has_ended(month, today) is ended


# --- a movement on the accounts it moves ----------------------------------------------------------


def _pair(payer: Account, payee: Account) -> dict[str, Account]:
    return {payer.account_id: payer, payee.account_id: payee}


def test_a_posting_needs_both_accounts_and_judges_each_side() -> None:
    payer, payee = account(balance=1_000), replace(account(), account_id="acc_2")
    order = TransferOrder("acc_1", "acc_2", eur(1_000), "rent")
    require_posting(order, _pair(payer, payee))
    with pytest.raises(NotFound):
        require_posting(order, {"acc_1": payer})
    assert reason_of(lambda: require_posting(replace(order, amount=eur(1_001)), _pair(payer, payee))) == "INSUFFICIENT_FUNDS"
    full = replace(payee, balance=MAX_MINOR - 999)
    assert reason_of(lambda: require_posting(order, _pair(payer, full))) == "BALANCE_LIMIT_EXCEEDED"
    closed = replace(payee, status=AccountStatus.CLOSED)
    assert reason_of(lambda: require_posting(order, _pair(payer, closed))) == "ACCOUNT_CLOSED"


def test_a_posting_moves_money_between_two_accounts() -> None:
    payer = account(balance=1_000)
    assert reason_of(lambda: require_posting(TransferOrder("acc_1", "acc_1", eur(1), "loop"), {"acc_1": payer})) == "SAME_ACCOUNT"


def test_a_posting_that_captures_a_hold_may_spend_what_the_hold_reserved() -> None:
    payer, payee = account(balance=1_000, held=1_000), replace(account(), account_id="acc_2")
    order = TransferOrder("acc_1", "acc_2", eur(1_000), "captured")
    assert reason_of(lambda: require_posting(order, _pair(payer, payee))) == "INSUFFICIENT_FUNDS"
    require_posting(order, _pair(payer, payee), release=1_000)


def test_a_hold_reserves_from_the_payer_for_a_payee_in_its_currency() -> None:
    payer, payee = account(balance=1_000), replace(account(), account_id="acc_2")
    order = TransferOrder("acc_1", "acc_2", eur(1_000), "held")
    require_holdable(order, _pair(payer, payee))
    assert reason_of(lambda: require_holdable(replace(order, amount=eur(1_001)), _pair(payer, payee))) == "INSUFFICIENT_FUNDS"
    dollars = replace(payee, currency="USD")
    assert reason_of(lambda: require_holdable(order, _pair(payer, dollars))) == "CURRENCY_MISMATCH"
    with pytest.raises(NotFound):
        require_holdable(order, {"acc_1": payer})


def test_a_cursor_inside_a_recorded_chunk_of_fees_names_the_chunk() -> None:
    refused = fee_chunk_overlap("", "acc_9")
    assert refused.reason == "FEE_CHUNK_OVERLAP" and "the first account" in refused.message
    assert refused.metadata == {"chunk_after_account_id": "", "chunk_last_account_id": "acc_9"}
