"""The payment context's use cases over a fake ledger and a fake payment network: authority before
anything is written, funds held before they move, a network that is away or refuses, and a
request that lost its answer finished by the worker without new authority."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from common.clock import Clock, FixedClock
from common.errors import NotFound, PermissionDenied, PreconditionFailed, Unauthenticated, Unavailable
from common.filtering import Filter
from common.idempotency import IdempotencyKey
from common.money import Money
from common.security.context import ADMIN, SecurityContext, caller_var, current_caller
from services.payment.domain import NO_REMITTANCE, Beneficiary, Payment, PaymentStatus, Remittance
from services.payment.forwarding import StoreAndForward
from services.payment.module import PaymentModule
from services.payment.ports import Accounts, FoundHold, NetworkAnswer, NetworkUnavailable, PaymentNetwork
from services.payment.reconciliation import BookedTransfer, NetworkSettlement
from services.payment.service import PaymentUseCases
from tests.unit.contexts import ADMIN_CALLER, FIRST_PAGE, NOW, acting_as, context_under_test, customer_caller
from tests.unit.holds import HoldBook

CLEARING = "acc_clearing"


@dataclass
class FakeLedger(HoldBook, Accounts):
    """The account context in memory: owners, balances and holds, each write idempotent by request id."""

    owners: dict[str, str] = field(default_factory=dict)  # account -> customer ("" for the bank's own)
    answers_lost: int = 0  # the next place_hold calls succeed, but their answer never arrives
    revoked: set[str] = field(default_factory=set)  # customers whose tokens the account context refuses
    closed: set[str] = field(default_factory=set)  # request ids LookupHold closed: they never place a hold

    def _may_debit(self, account_id: str) -> None:
        caller = current_caller()
        if account_id not in self.owners:
            raise NotFound("account", account_id)
        if not self.owners[account_id]:  # as the account context: the bank's own accounts pay nobody
            raise PermissionDenied("INTERNAL_ACCOUNT", "the bank's own accounts neither make nor take payments")
        if not caller.has_role(ADMIN) and self.owners[account_id] != caller.customer_id:
            raise PermissionDenied("ACCESS_DENIED", "not yours")

    async def require_debit(self, account_id: str) -> None:
        self._may_debit(account_id)

    async def require_read(self, account_id: str) -> None:
        self._may_debit(account_id)

    async def require_payee(self, account_id: str) -> None:
        if account_id not in self.owners:
            raise NotFound("account", account_id)

    async def clearing_account(self, currency: str) -> str:
        return CLEARING

    def available(self, account_id: str) -> int:
        held = sum(h.amount.minor for h in self.holds.values() if h.debtor == account_id and h.status == "PLACED")
        return self.balances[account_id] - held

    async def place_hold(
        self,
        request_id: str,
        debtor: str,
        creditor: str,
        amount: Money,
        description: str,
        *,
        capture: bool,
        remittance: Remittance = NO_REMITTANCE,
    ) -> FoundHold:
        # As the account context does: the caller and the account are judged before a request id
        # is replayed, so an identical request's copy can be refused a hold that exists.
        self._judge()
        self._may_debit(debtor)
        if request_id in self.closed:
            raise PreconditionFailed("REQUEST_VOIDED", "closed by LookupHold")
        if request_id not in self.holds:
            if self.available(debtor) < amount.minor:
                raise PreconditionFailed("INSUFFICIENT_FUNDS", "not enough")
            placed = self.place(request_id, debtor, creditor, amount)
            if capture:
                self.capture(placed.hold_id)
        if self.answers_lost:
            self.answers_lost -= 1
            raise Unavailable("ACCOUNTS_UNAVAILABLE", "the answer was lost")
        return self._found(request_id)

    def _judge(self) -> None:
        """As the account context's door does on every call: a revoked token is refused, whatever
        the call (a context acting as itself carries no user token)."""
        caller = caller_var.get()
        if caller is not None and caller.customer_id in self.revoked:
            raise Unauthenticated("TOKEN_REVOKED", "the token was revoked")

    async def lookup_hold(self, request_id: str) -> FoundHold:
        self._judge()
        if request_id not in self.holds:
            self.closed.add(request_id)
            raise NotFound("hold request", request_id)
        return self._found(request_id)

    def _found(self, request_id: str) -> FoundHold:
        hold = self.holds[request_id]
        return FoundHold(hold.hold_id, hold.status == "RELEASED", hold.transfer_id)

    async def capture_hold(self, request_id: str, hold_id: str) -> str:
        self._judge()
        return self.capture(hold_id)

    async def release_hold(self, request_id: str, hold_id: str) -> None:
        self._judge()
        hold = self.by_id(hold_id)
        if hold.status == "CAPTURED":
            raise PreconditionFailed("HOLD_ALREADY_RESOLVED", "captured")
        hold.status = "RELEASED"

    async def credits_of(self, account_id: str) -> list[BookedTransfer]:
        return [
            BookedTransfer(h.transfer_id, h.amount)
            for h in self.holds.values()
            if h.creditor == account_id and h.status == "CAPTURED"
        ]


@dataclass
class FakeNetwork(PaymentNetwork):
    """VelocityPay: settles, rejects, or does not answer, as the test says."""

    mode: str = "settle"  # settle | reject | away
    submitted: list[str] = field(default_factory=list)
    meanwhile: Callable[[], Awaitable[None]] | None = None  # runs once, while the first submission waits

    def accepts_calls(self) -> bool:
        return self.mode != "away"

    async def submit(self, payment: Payment) -> NetworkAnswer:
        if self.mode == "away":
            raise NetworkUnavailable("no answer")
        self.submitted.append(payment.payment_id)
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile is not None:
            await meanwhile()
        return NetworkAnswer(settled=self.mode == "settle", reject_reason="" if self.mode == "settle" else "ACCOUNT_CLOSED")

    async def settlements(self) -> list[NetworkSettlement]:
        return []


@dataclass
class Bank:
    payments: PaymentUseCases
    worker: StoreAndForward
    ledger: FakeLedger
    network: FakeNetwork
    clock: FixedClock


@pytest.fixture
async def bank(tmp_path: Path) -> AsyncIterator[Bank]:
    ledger = FakeLedger(
        balances={"acc_ada": 10_000, "acc_bob": 0, CLEARING: 0},
        owners={"acc_ada": "cus_ada", "acc_bob": "cus_bob", CLEARING: ""},
    )
    network = FakeNetwork()
    fakes = {Accounts: ledger, PaymentNetwork: network}
    async with context_under_test(PaymentModule, tmp_path, fakes) as context:
        clock = context.resolve(Clock)
        assert isinstance(clock, FixedClock)
        yield Bank(context.resolve(PaymentUseCases), context.resolve(StoreAndForward), ledger, network, clock)


def key(request_id: str) -> IdempotencyKey:
    return IdempotencyKey(request_id, "test", request_id, "usr_cus_ada")


def eur(minor: int) -> Money:
    return Money("EUR", minor)


TO_BOB = Beneficiary(account_id="acc_bob")
ABROAD = Beneficiary(iban="DE89370400440532013000", name="Max")


async def test_an_internal_payment_completes_once_per_request_id(bank: Bank) -> None:
    with acting_as(customer_caller("cus_ada")):
        paid = await bank.payments.create("acc_ada", TO_BOB, eur(2_500), "rent", key("p1"))
        assert paid.status is PaymentStatus.COMPLETED and paid.transfer_id
        assert (await bank.payments.create("acc_ada", TO_BOB, eur(2_500), "rent", key("p1"))).payment_id == paid.payment_id
    assert bank.ledger.balances == {"acc_ada": 7_500, "acc_bob": 2_500, CLEARING: 0}


async def test_a_caller_who_may_not_spend_leaves_no_trace(bank: Bank) -> None:
    with acting_as(customer_caller("cus_bob")), pytest.raises(PermissionDenied):
        await bank.payments.create("acc_ada", TO_BOB, eur(1), "theft", key("p1"))
    with acting_as(ADMIN_CALLER):
        assert await bank.payments.payments_of("acc_ada", Filter(), FIRST_PAGE) == ([], "")
    assert bank.ledger.holds == {}


@pytest.mark.parametrize("caller", [customer_caller("cus_ada"), ADMIN_CALLER])
async def test_the_banks_own_account_pays_nobody_and_the_refusal_says_so_to_anyone(bank: Bank, caller: SecurityContext) -> None:
    with acting_as(caller), pytest.raises(PermissionDenied) as refused:
        await bank.payments.create(CLEARING, TO_BOB, eur(1), "", key("p1"))
    assert refused.value.reason == "INTERNAL_ACCOUNT", "the account's kind, not the caller's rights"
    assert bank.ledger.holds == {}


async def test_only_an_admin_reconciles_with_the_network(bank: Bank) -> None:
    with acting_as(customer_caller("cus_ada")), pytest.raises(PermissionDenied):
        await bank.payments.reconcile("EUR")
    with acting_as(ADMIN_CALLER):
        assert (await bank.payments.reconcile("EUR")).discrepancies == []


async def test_a_payment_to_an_unknown_account_is_not_found_before_anything_is_written(bank: Bank) -> None:
    with acting_as(customer_caller("cus_ada")):
        with pytest.raises(NotFound):
            await bank.payments.create("acc_ada", Beneficiary(account_id="acc_nobody"), eur(1), "", key("p1"))
        assert await bank.payments.payments_of("acc_ada", Filter(), FIRST_PAGE) == ([], "")


async def test_insufficient_funds_fail_the_payment_and_hold_nothing(bank: Bank) -> None:
    with acting_as(customer_caller("cus_ada")):
        failed = await bank.payments.create("acc_ada", TO_BOB, eur(10_001), "", key("p1"))
    assert (failed.status, failed.failure_reason) == (PaymentStatus.FAILED, "INSUFFICIENT_FUNDS")
    assert bank.ledger.holds == {} and bank.ledger.balances["acc_ada"] == 10_000


async def test_an_external_payment_is_captured_to_clearing_when_the_network_settles(bank: Bank) -> None:
    with acting_as(customer_caller("cus_ada")):
        paid = await bank.payments.create("acc_ada", ABROAD, eur(5_000), "invoice", key("p1"))
    assert paid.status is PaymentStatus.COMPLETED and bank.network.submitted == [paid.payment_id]
    assert bank.ledger.balances[CLEARING] == 5_000


async def test_a_rejected_external_payment_releases_its_funds(bank: Bank) -> None:
    bank.network.mode = "reject"
    with acting_as(customer_caller("cus_ada")):
        failed = await bank.payments.create("acc_ada", ABROAD, eur(5_000), "invoice", key("p1"))
    assert (failed.status, failed.failure_reason) == (PaymentStatus.FAILED, "ACCOUNT_CLOSED")
    assert bank.ledger.available("acc_ada") == 10_000


async def test_a_payment_waits_with_its_funds_held_while_the_network_is_away(bank: Bank) -> None:
    bank.network.mode = "away"
    with acting_as(customer_caller("cus_ada")):
        queued = await bank.payments.create("acc_ada", ABROAD, eur(5_000), "invoice", key("p1"))
    assert queued.status is PaymentStatus.QUEUED and bank.ledger.available("acc_ada") == 5_000
    assert await bank.worker.forward_once() == 0
    bank.network.mode = "settle"
    bank.clock.move_to(NOW + timedelta(seconds=1))
    with acting_as(None):  # the worker acts as the context itself
        assert await bank.worker.forward_once() == 1
    with acting_as(customer_caller("cus_ada")):
        assert (await bank.payments.get(queued.payment_id)).status is PaymentStatus.COMPLETED


async def test_a_lost_answer_is_finished_by_the_worker_with_the_hold_the_request_placed(bank: Bank) -> None:
    bank.ledger.answers_lost = 1
    with acting_as(customer_caller("cus_ada")), pytest.raises(Unavailable) as silent:
        await bank.payments.create("acc_ada", TO_BOB, eur(1_000), "", key("p1"))
    payment_id = silent.value.metadata["payment_id"]
    bank.clock.move_to(NOW + timedelta(minutes=5))  # the request is stale: the worker's now
    with acting_as(None):
        assert await bank.worker.forward_once() == 1
    assert len(bank.ledger.holds) == 1  # found, not placed again
    with acting_as(customer_caller("cus_ada")):
        assert (await bank.payments.get(payment_id)).status is PaymentStatus.COMPLETED
    assert bank.ledger.balances["acc_bob"] == 1_000


async def test_a_copy_refused_the_hold_its_twin_placed_ends_on_the_twins_payment(bank: Bank) -> None:
    """Two copies of one CreatePayment: the first holds the funds and waits on the network; the
    account context refuses the second's PlaceHold (its token revoked since the payment context
    checked it), though the hold exists. Both answer the one payment, settled once: the refused
    copy used to fail it while the first copy moved the money."""
    answers: list[Payment] = []

    async def twin() -> None:
        bank.ledger.revoked.add("cus_ada")
        with acting_as(customer_caller("cus_ada")):
            answers.append(await bank.payments.create("acc_ada", ABROAD, eur(5_000), "invoice", key("p1")))

    bank.network.meanwhile = twin
    with acting_as(customer_caller("cus_ada")):
        first = await bank.payments.create("acc_ada", ABROAD, eur(5_000), "invoice", key("p1"))
    assert [(a.payment_id, a.status) for a in answers] == [(first.payment_id, PaymentStatus.COMPLETED)]
    assert first.status is PaymentStatus.COMPLETED and first.transfer_id == answers[0].transfer_id
    assert bank.ledger.balances == {"acc_ada": 5_000, "acc_bob": 0, CLEARING: 5_000} and len(bank.ledger.holds) == 1


async def test_a_hold_refused_with_no_twin_fails_the_payment_and_closes_its_request_id(bank: Bank) -> None:
    bank.ledger.revoked.add("cus_ada")
    with acting_as(customer_caller("cus_ada")):
        failed = await bank.payments.create("acc_ada", ABROAD, eur(5_000), "invoice", key("p1"))
    assert (failed.status, failed.failure_reason) == (PaymentStatus.FAILED, "TOKEN_REVOKED")
    assert bank.ledger.holds == {} and bank.ledger.closed == {f"{failed.payment_id}-hold"}, "no copy can hold it later"
    bank.ledger.revoked.clear()
    with acting_as(customer_caller("cus_ada")):
        again = await bank.payments.create("acc_ada", ABROAD, eur(5_000), "invoice", key("p1"))
    assert again == failed and bank.network.submitted == []
