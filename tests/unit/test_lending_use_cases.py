"""The lending context's use cases over a fake ledger and customer directory: who applies into
which account, approval, and the disbursement saga forwards and compensated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from common.errors import NotFound, PermissionDenied, PreconditionFailed, Unavailable
from common.money import Money
from common.security.context import ADMIN, RELATIONSHIP_MANAGER, SecurityContext, service_identity
from services.lending.disbursement import current_caller_has_subject
from services.lending.domain import LoanStatus, RepaymentStatus
from services.lending.ports import PayoutAccount
from tests.unit.contexts import ADMIN_CALLER, FIRST_PAGE, acting_as, customer_caller
from tests.unit.lending_fakes import EUR_100, EUR_5000, LOAN_BOOK, Lending, disbursed, key, lending_under_test


@pytest.fixture
async def lending(tmp_path: Path) -> AsyncIterator[Lending]:
    async with lending_under_test(tmp_path) as built:
        yield built


async def test_a_customer_applies_into_her_own_account_only(lending: Lending) -> None:
    with acting_as(customer_caller("cus_ada")):
        loan = await lending.loans.apply("cus_ada", "acc_ada", EUR_5000, 24, key("a1"))
        assert loan.status is LoanStatus.APPLIED
        with pytest.raises(PreconditionFailed) as refused:
            await lending.loans.apply("cus_ada", "acc_bob", EUR_5000, 24, key("a2"))
        assert refused.value.reason == "ACCOUNT_NOT_ELIGIBLE"
        with pytest.raises(PermissionDenied):
            await lending.loans.apply("cus_bob", "acc_bob", EUR_5000, 24, key("a3"))
    with acting_as(ADMIN_CALLER), pytest.raises(NotFound):
        await lending.loans.apply("cus_nobody", "acc_ada", EUR_5000, 24, key("a4"))


async def test_only_an_admin_approves_and_disburses_an_approved_loan(lending: Lending) -> None:
    with acting_as(customer_caller("cus_ada")):
        loan = await lending.loans.apply("cus_ada", "acc_ada", EUR_5000, 24, key("a1"))
        with pytest.raises(PermissionDenied):
            await lending.loans.approve(loan.loan_id, "0.05", key("ap1"))
    with acting_as(ADMIN_CALLER):
        for act in (lending.loans.approve("lon_unknown", "0.05", key("ap0")), lending.loans.disburse("lon_unknown", key("d00"))):
            with pytest.raises(NotFound):
                await act
        with pytest.raises(PreconditionFailed) as early:
            await lending.loans.disburse(loan.loan_id, key("d0"))
        assert early.value.reason == "LOAN_NOT_APPROVED"
        approved = await lending.loans.approve(loan.loan_id, "0.05", key("ap2"))
        assert (approved.status, approved.annual_rate) == (LoanStatus.APPROVED, "0.05")
        assert (await lending.loans.approve(loan.loan_id, "0.05", key("ap3"))).status is LoanStatus.APPROVED
    with acting_as(customer_caller("cus_ada")), pytest.raises(PermissionDenied):
        await lending.loans.disburse(loan.loan_id, key("d1"))  # the borrower reads her loan, and no more
    with acting_as(ADMIN_CALLER):
        assert (await lending.loans.get(loan.loan_id)).status is LoanStatus.APPROVED
    assert lending.ledger.holds == {}


async def test_a_disbursement_moves_the_principal_from_the_loan_book_once(lending: Lending) -> None:
    with acting_as(ADMIN_CALLER):
        loan = await lending.loans.apply("cus_ada", "acc_ada", EUR_5000, 24, key("a1"))
        await lending.loans.approve(loan.loan_id, "0.05", key("ap1"))
        disbursed, saga = await lending.loans.disburse(loan.loan_id, key("d1"))
        assert disbursed.status is LoanStatus.DISBURSED and saga is not None and saga.status == "COMPLETED"
        await lending.loans.disburse(loan.loan_id, key("d2"))
    assert lending.ledger.balances == {LOAN_BOOK: -500_000, "acc_ada": 500_000, "acc_bob": 0}


async def test_a_refused_capture_compensates_and_nothing_stays_held(lending: Lending) -> None:
    lending.ledger.refuse_capture = True
    with acting_as(ADMIN_CALLER):
        loan = await lending.loans.apply("cus_ada", "acc_ada", EUR_5000, 24, key("a1"))
        await lending.loans.approve(loan.loan_id, "0.05", key("ap1"))
        failed, saga = await lending.loans.disburse(loan.loan_id, key("d1"))
    assert failed.status is LoanStatus.DISBURSEMENT_FAILED and saga is not None and saga.status != "COMPLETED"
    assert [h.status for h in lending.ledger.holds.values()] == ["RELEASED"]
    assert lending.ledger.balances["acc_ada"] == 0 and lending.ledger.reversed == []


async def test_the_relationship_manager_assigned_reads_the_loans_and_changes_nothing(lending: Lending) -> None:
    rita = SecurityContext("usr_rita", "rita", (RELATIONSHIP_MANAGER,))
    ron = SecurityContext("usr_ron", "ron", (RELATIONSHIP_MANAGER,))
    with acting_as(customer_caller("cus_ada")):
        loan = await lending.loans.apply("cus_ada", "acc_ada", EUR_5000, 24, key("a1"))
    with acting_as(rita):
        assert (await lending.loans.get(loan.loan_id)).loan_id == loan.loan_id
        loans, _ = await lending.loans.loans_of("cus_ada", FIRST_PAGE)
        assert [found.loan_id for found, _ in loans] == [loan.loan_id]
        with pytest.raises(PermissionDenied):
            await lending.loans.apply("cus_ada", "acc_ada", EUR_5000, 24, key("a2"))
        with pytest.raises(PermissionDenied):
            await lending.loans.get_with_saga(await _bobs_loan(lending))
    with acting_as(ron), pytest.raises(PermissionDenied):
        await lending.loans.get(loan.loan_id)


async def _bobs_loan(lending: Lending) -> str:
    with acting_as(customer_caller("cus_bob")):
        return (await lending.loans.apply("cus_bob", "acc_bob", EUR_5000, 12, key("b1"))).loan_id


ANNA = SecurityContext("usr_anna", "anna", (ADMIN,))


async def test_a_loan_above_the_four_eyes_amount_needs_two_admins_neither_the_applicant(lending: Lending) -> None:
    big = Money("EUR", 2_000_000)  # 20,000.00, above the default 10,000.00
    with acting_as(ADMIN_CALLER):  # an admin applies for the customer: they approve no part of it
        loan = await lending.loans.apply("cus_ada", "acc_ada", big, 24, key("big"))
        with pytest.raises(PreconditionFailed) as maker:
            await lending.loans.approve(loan.loan_id, "0.05", key("maker-first"))
        assert maker.value.reason == "FOUR_EYES_REQUIRED"
    with acting_as(ANNA):
        first = await lending.loans.approve(loan.loan_id, "0.050", key("first"))
        assert (first.status, first.first_approver) == (LoanStatus.AWAITING_SECOND_APPROVAL, "usr_anna")
        assert (await lending.loans.approve(loan.loan_id, "0.05", key("again"))).status is LoanStatus.AWAITING_SECOND_APPROVAL
        with pytest.raises(PreconditionFailed) as waiting:
            await lending.loans.disburse(loan.loan_id, key("too-soon"))
        assert waiting.value.reason == "LOAN_NOT_APPROVED"
    with acting_as(ADMIN_CALLER), pytest.raises(PreconditionFailed) as maker_second:
        await lending.loans.approve(loan.loan_id, "0.05", key("maker-second"))
    assert maker_second.value.reason == "FOUR_EYES_REQUIRED"
    ben = SecurityContext("usr_ben", "ben", (ADMIN,))
    with acting_as(ben):
        with pytest.raises(PreconditionFailed) as other_rate:
            await lending.loans.approve(loan.loan_id, "0.06", key("ben-6"))
        assert other_rate.value.reason == "APPROVAL_RATE_DIFFERS"
        approved = await lending.loans.approve(loan.loan_id, "0.05", key("ben-5"))  # the same rate as "0.050"
        assert approved.status is LoanStatus.APPROVED and approved.installment_minor is not None


async def test_the_four_eyes_amount_is_the_currencys(lending: Lending) -> None:
    """JPY 1,000,001 is about EUR 6,000: one admin approves it; JPY 2,000,000 needs two."""
    lending.ledger.accounts["acc_ada_jpy"] = PayoutAccount("cus_ada", "JPY")
    with acting_as(customer_caller("cus_ada")):
        small = await lending.loans.apply("cus_ada", "acc_ada_jpy", Money("JPY", 1_000_001), 12, key("jpy-small"))
        big = await lending.loans.apply("cus_ada", "acc_ada_jpy", Money("JPY", 2_000_000), 12, key("jpy-big"))
    with acting_as(ANNA):
        assert (await lending.loans.approve(small.loan_id, "0.05", key("s"))).status is LoanStatus.APPROVED
        assert (await lending.loans.approve(big.loan_id, "0.05", key("b"))).status is LoanStatus.AWAITING_SECOND_APPROVAL


async def test_an_approval_replays_its_first_answer(lending: Lending) -> None:
    with acting_as(customer_caller("cus_ada")):
        loan = await lending.loans.apply("cus_ada", "acc_ada", EUR_5000, 24, key("a"))
    with acting_as(ANNA):
        approved = await lending.loans.approve(loan.loan_id, "0.05", key("ok"))
        assert await lending.loans.approve(loan.loan_id, "0.05", key("ok")) == approved
        with pytest.raises(PreconditionFailed) as refused:
            await lending.loans.approve(loan.loan_id, "0.07", key("late"))
        assert refused.value.reason == "LOAN_NOT_APPLIED"
        with pytest.raises(PreconditionFailed) as again:
            await lending.loans.approve(loan.loan_id, "0.07", key("late"))
        assert again.value.reason == "LOAN_NOT_APPLIED"


async def test_a_repayment_whose_answer_was_lost_is_taken_once_by_the_retry(lending: Lending) -> None:
    loan_id = await disbursed(lending)
    lending.ledger.lose_answer = "after"
    with acting_as(customer_caller("cus_ada")):
        with pytest.raises(Unavailable):
            await lending.loans.repay(loan_id, EUR_100, key("r1"))
        pending, _ = await lending.loans.repayments(loan_id, FIRST_PAGE)
        assert [r.status for r in pending] == [RepaymentStatus.PENDING], (
            "recorded before the debit: no other payment takes its parts"
        )
        repaid, view = await lending.loans.repay(loan_id, EUR_100, key("r1"))
    assert repaid.status is RepaymentStatus.POSTED and repaid.repayment_id == pending[0].repayment_id
    assert lending.ledger.balances["acc_ada"] == 500_000 - 10_000, "taken once"
    assert view.position is not None and view.position.outstanding_principal == 500_000 - repaid.allocation.principal


async def test_a_lost_answer_nobody_retries_is_settled_by_the_resolver_either_way(lending: Lending) -> None:
    loan_id = await disbursed(lending)
    with acting_as(customer_caller("cus_ada")):
        lending.ledger.lose_answer = "before"
        with pytest.raises(Unavailable):
            await lending.loans.repay(loan_id, EUR_100, key("r1"))
        lending.ledger.lose_answer = "after"
        with pytest.raises(Unavailable):
            await lending.loans.repay(loan_id, EUR_100, key("r2"))
    assert await lending.loans.settle_stale(timedelta(seconds=-1)) == 2  # as this context alone
    with acting_as(ADMIN_CALLER):
        settled, _ = await lending.loans.repayments(loan_id, FIRST_PAGE)
        view, _ = await lending.loans.view(loan_id)
    assert [r.status for r in settled] == [RepaymentStatus.POSTED], "the one never taken is gone, the one taken is posted"
    assert lending.ledger.balances["acc_ada"] == 500_000 - 10_000
    assert view.position is not None and view.position.outstanding_principal == 500_000 - settled[0].allocation.principal


async def test_only_the_borrower_or_an_admin_repays(lending: Lending) -> None:
    loan_id = await disbursed(lending)
    rita = SecurityContext("usr_rita", "rita", (RELATIONSHIP_MANAGER,))
    for caller in (rita, customer_caller("cus_bob")):
        with acting_as(caller), pytest.raises(PermissionDenied):
            await lending.loans.repay(loan_id, EUR_100, key("r1"))
    assert lending.ledger.taken == {} and lending.ledger.balances["acc_ada"] == 500_000


async def test_a_loan_is_paid_into_an_account_in_its_currency(lending: Lending) -> None:
    lending.ledger.accounts["acc_ada_usd"] = PayoutAccount("cus_ada", "USD")
    with acting_as(customer_caller("cus_ada")), pytest.raises(PreconditionFailed) as refused:
        await lending.loans.apply("cus_ada", "acc_ada_usd", EUR_5000, 24, key("a1"))
    assert refused.value.reason == "ACCOUNT_NOT_ELIGIBLE"


async def test_a_loan_of_exactly_the_four_eyes_amount_needs_one_admin(lending: Lending) -> None:
    with acting_as(ADMIN_CALLER):
        loan = await lending.loans.apply("cus_ada", "acc_ada", Money("EUR", 1_000_000), 24, key("a1"))
        assert (await lending.loans.approve(loan.loan_id, "0.05", key("ap1"))).status is LoanStatus.APPROVED


async def test_a_loan_is_quoted_once_disbursed_and_repaid_in_its_currency(lending: Lending) -> None:
    with acting_as(ADMIN_CALLER):
        approved = await lending.loans.apply("cus_ada", "acc_ada", EUR_5000, 24, key("a1"))
        await lending.loans.approve(approved.loan_id, "0.05", key("ap1"))
        with pytest.raises(PreconditionFailed) as early:
            await lending.loans.quote(approved.loan_id)
        assert early.value.reason == "LOAN_NOT_ACTIVE"
    loan_id = await disbursed(lending)
    with acting_as(customer_caller("cus_ada")), pytest.raises(PreconditionFailed) as dollars:
        await lending.loans.repay(loan_id, Money("USD", 10_000), key("r1"))
    assert dollars.value.reason == "CURRENCY_MISMATCH" and lending.ledger.taken == {}


def test_only_a_task_acting_for_a_user_places_a_disbursements_hold() -> None:
    """A disbursement resumed in the background (no caller, or the context alone) only finds the
    hold its request placed; the request path (a user's authority) places it."""
    for caller, places in ((None, False), (service_identity("lending"), False), (ADMIN_CALLER, True)):
        with acting_as(caller):
            assert current_caller_has_subject() is places
