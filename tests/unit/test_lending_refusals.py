"""The lending context when the account context refuses a step for the caller's authority (a token
revoked, a right withdrawn) rather than for the state: such a refusal is judged before the request
id is looked at, so it says nothing of what an identical request with that id did. It is final
only once lending has looked the request id up as itself (which closes an id that did nothing)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.errors import AppError, PermissionDenied, Unauthenticated, Unavailable
from common.saga.log import COMPENSATED, COMPLETED, REFUSED
from services.lending.domain import LoanStatus, Repayment, RepaymentStatus
from tests.unit.contexts import ADMIN_CALLER, FIRST_PAGE, acting_as, customer_caller
from tests.unit.lending_fakes import EUR_100, EUR_5000, LOAN_BOOK, Lending, disbursed, key, lending_under_test

ADA = "usr_cus_ada"  # the user of customer_caller("cus_ada")


@pytest.fixture
async def lending(tmp_path: Path) -> AsyncIterator[Lending]:
    async with lending_under_test(tmp_path) as built:
        yield built


@pytest.mark.parametrize("refusal", ["revoked", "withdrawn"])
async def test_a_copy_refused_the_debit_its_twin_took_answers_the_twins_repayment(lending: Lending, refusal: str) -> None:
    """Two copies of one RepayLoan: the first's debit is taken; before its answer is recorded, the
    account context refuses the second copy's debit (same request id: Ada's token revoked, or her
    right withdrawn, since lending checked her), though the debit exists. Both answer the one
    repayment, posted once. The refused copy used to refuse the repayment (its parts given back)
    or answer UNAUTHENTICATED, while the first copy's debit had taken the money."""
    loan_id = await disbursed(lending)
    answers: list[Repayment | AppError] = []

    async def twin() -> None:
        getattr(lending.ledger, refusal).add(ADA)
        with acting_as(customer_caller("cus_ada")):
            try:
                answers.append((await lending.loans.repay(loan_id, EUR_100, key("r1")))[0])
            except AppError as refused:
                answers.append(refused)

    lending.ledger.meanwhile = twin
    with acting_as(customer_caller("cus_ada")):
        first, view = await lending.loans.repay(loan_id, EUR_100, key("r1"))
    assert answers == [first] and first.status is RepaymentStatus.POSTED
    assert list(lending.ledger.taken) == [first.repayment_id] and lending.ledger.closed == set()
    assert lending.ledger.balances["acc_ada"] == 500_000 - 10_000, "taken once"
    assert view.position is not None and view.position.outstanding_principal == 500_000 - first.allocation.principal


async def test_a_debit_refused_a_right_with_no_twin_is_the_request_ids_answer_and_closes_its_debit(lending: Lending) -> None:
    loan_id = await disbursed(lending)
    lending.ledger.withdrawn.add(ADA)
    with acting_as(customer_caller("cus_ada")):
        with pytest.raises(PermissionDenied) as refused:
            await lending.loans.repay(loan_id, EUR_100, key("r1"))
        assert refused.value.reason == "ACCESS_DENIED"
        lending.ledger.withdrawn.clear()
        with pytest.raises(PermissionDenied) as again:
            await lending.loans.repay(loan_id, EUR_100, key("r1"))
        assert again.value.reason == "ACCESS_DENIED", "the refusal stays the request_id's answer"
        assert await lending.loans.repayments(loan_id, FIRST_PAGE) == ([], "")
    assert lending.ledger.taken == {} and len(lending.ledger.closed) == 1, "looked up, and closed: no copy can take it"


async def test_a_debit_refused_a_revoked_token_with_no_twin_leaves_nothing_and_frees_the_request_id(lending: Lending) -> None:
    """UNAUTHENTICATED cannot be a request's kept answer (a new token must be heard): the debit's
    request id is closed, the repayment dropped as the resolver would drop it, and the request
    sent again with a new token makes a new one."""
    loan_id = await disbursed(lending)
    lending.ledger.revoked.add(ADA)
    with acting_as(customer_caller("cus_ada")), pytest.raises(Unauthenticated) as refused:
        await lending.loans.repay(loan_id, EUR_100, key("r1"))
    assert refused.value.reason == "TOKEN_REVOKED"
    assert lending.ledger.taken == {} and len(lending.ledger.closed) == 1, "looked up, and closed: no copy can take it"
    with acting_as(ADMIN_CALLER):
        assert await lending.loans.repayments(loan_id, FIRST_PAGE) == ([], "")
    lending.ledger.revoked.clear()
    with acting_as(customer_caller("cus_ada")):
        repaid, _ = await lending.loans.repay(loan_id, EUR_100, key("r1"))
    assert repaid.status is RepaymentStatus.POSTED and repaid.repayment_id not in lending.ledger.closed
    assert lending.ledger.balances["acc_ada"] == 500_000 - 10_000


async def _approved(lending: Lending) -> str:
    with acting_as(ADMIN_CALLER):
        loan = await lending.loans.apply("cus_ada", "acc_ada", EUR_5000, 24, key("a1"))
        await lending.loans.approve(loan.loan_id, "0.05", key("ap1"))
    return loan.loan_id


async def test_a_disbursement_refused_the_hold_an_earlier_attempt_placed_goes_on_with_it(lending: Lending) -> None:
    """The reserve step's hold is placed but its answer lost, and the admin's token is revoked
    before the step is retried: the account context refuses the retry (same request id) though
    the hold exists. Looked up as this context, the hold is the saga's, and what it did is
    finished as this context: the loan is disbursed, once. It used to turn the saga around with
    the admin's refused authority, unable even to find the hold: FAILED_NEEDS_OPERATOR, the loan
    DISBURSEMENT_FAILED and the funds held."""
    loan_id = await _approved(lending)

    async def answer_lost() -> None:
        lending.ledger.revoked.add("usr_admin")
        raise Unavailable("ACCOUNTS_UNAVAILABLE", "the answer was lost")

    lending.ledger.meanwhile = answer_lost
    with acting_as(ADMIN_CALLER):
        loan, saga = await lending.loans.disburse(loan_id, key("d1"))
    assert loan.status is LoanStatus.DISBURSED and saga is not None and saga.status == COMPLETED, saga
    assert [h.status for h in lending.ledger.holds.values()] == ["CAPTURED"]
    assert lending.ledger.balances == {LOAN_BOOK: -500_000, "acc_ada": 500_000, "acc_bob": 0}


async def test_a_disbursement_refused_its_hold_with_nothing_placed_ends_compensated(lending: Lending) -> None:
    """The admin's token revoked before the hold: the reserve step is refused for good once the
    lookup has closed its request id (no attempt can hold the funds later); nothing to undo."""
    loan_id = await _approved(lending)
    lending.ledger.revoked.add("usr_admin")
    with acting_as(ADMIN_CALLER):
        loan, saga = await lending.loans.disburse(loan_id, key("d1"))
    assert loan.status is LoanStatus.DISBURSEMENT_FAILED and saga is not None and saga.status == COMPENSATED, saga
    assert [(s.name, s.state, s.last_error) for s in saga.steps.values()] == [("reserve_funds", REFUSED, "TOKEN_REVOKED")]
    assert lending.ledger.holds == {} and lending.ledger.closed == {f"{saga.saga_id}-reserve_funds-do"}
