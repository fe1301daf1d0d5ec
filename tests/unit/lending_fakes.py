"""The account and customer contexts in memory, for the lending context's unit tests: a ledger
that takes debits and keeps holds by request id, and the lending context built over them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import NotFound, PermissionDenied, PreconditionFailed, Unauthenticated, Unavailable
from common.idempotency import IdempotencyKey
from common.money import Money
from common.security.context import ADMIN, caller_var
from services.lending.module import LendingModule
from services.lending.ports import Accounts, Customers, Debit, DebitOutcome, HeldFunds, PayoutAccount
from services.lending.service import LendingUseCases
from tests.unit.contexts import ADMIN_CALLER, acting_as, context_under_test
from tests.unit.holds import HoldBook

LOAN_BOOK = "acc_loan_book"


@dataclass
class FakeCustomers(Customers):
    known: set[str]
    managers: dict[str, str] = field(default_factory=dict)  # customer -> relationship manager's user id

    async def exists(self, customer_id: str) -> bool:
        return customer_id in self.known

    async def manager_of(self, customer_id: str) -> str:
        return self.managers.get(customer_id, "")


@dataclass
class FakeLedger(HoldBook, Accounts):
    """The account context in memory; `refuse_capture` makes the capture step refused for good.

    No kinder than the real one: every call judges the caller (a revoked token, a right withdrawn)
    before it looks at a request id, so a copy of a request can be refused what its twin did; and
    a lookup by request id that finds nothing closes the id for good."""

    accounts: dict[str, PayoutAccount] = field(default_factory=dict)
    reversed: list[str] = field(default_factory=list)
    refuse_capture: bool = False
    taken: dict[str, Debit] = field(default_factory=dict)  # debits posted, by request id
    lose_answer: str = ""  # the next debit call: "before" (nothing taken) or "after" (taken), then no answer
    revoked: set[str] = field(default_factory=set)  # users whose tokens the account context refuses
    withdrawn: set[str] = field(default_factory=set)  # users it no longer lets debit their accounts
    closed: set[str] = field(default_factory=set)  # request ids a lookup closed: they never take or hold anything
    meanwhile: Callable[[], Awaitable[None]] | None = None  # runs once, after the next debit or hold acted

    def _judge(self, debited: str = "") -> None:
        """The caller, as the account context judges it before anything else: its token, then its
        right to debit `debited`. This context acting alone is judged by neither."""
        caller = caller_var.get()
        if caller is None or not caller.has_subject:
            return
        if caller.user_id in self.revoked:
            raise Unauthenticated("TOKEN_REVOKED", "the token was revoked")
        account = self.accounts.get(debited)
        owns = account is not None and account.customer_id == caller.customer_id and caller.user_id not in self.withdrawn
        if debited and not caller.has_role(ADMIN) and not owns:
            raise PermissionDenied("ACCESS_DENIED", "not the caller's to debit")

    async def _then(self) -> None:
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile is not None:
            await meanwhile()

    async def payout_account(self, account_id: str) -> PayoutAccount:
        found = self.accounts.get(account_id)
        if found is None:
            raise NotFound("account", account_id)
        return found

    async def loan_book(self, currency: str) -> str:
        return LOAN_BOOK

    async def debit(self, debits: list[Debit]) -> list[DebitOutcome]:
        """Takes each debit the account can pay, once; `lose_answer` "before" loses the call,
        "after" its answer (the debits are taken)."""
        lose, self.lose_answer = self.lose_answer, ""
        if lose == "before":
            raise Unavailable("ACCOUNTS_UNAVAILABLE", "no answer")
        for d in debits:  # every account judged before anything is replayed or posted
            self._judge(d.account_id)
        outcomes = []
        for d in debits:
            total = d.principal.minor + d.interest.minor + d.late_fees.minor
            if d.request_id in self.closed:
                outcomes.append(DebitOutcome(d.request_id, False, "REQUEST_VOIDED"))
                continue
            if d.request_id not in self.taken and self.balances.get(d.account_id, 0) >= total:
                self.balances[d.account_id] -= total
                self.balances[LOAN_BOOK] += d.principal.minor
                self.taken[d.request_id] = d
            posted = d.request_id in self.taken
            outcomes.append(DebitOutcome(d.request_id, posted, "" if posted else "INSUFFICIENT_FUNDS"))
        await self._then()
        if lose == "after":
            raise Unavailable("ACCOUNTS_UNAVAILABLE", "no answer")
        return outcomes

    async def debit_taken(self, request_id: str) -> bool:
        self._judge()
        if request_id not in self.taken:
            self.closed.add(request_id)
        return request_id in self.taken

    async def place_hold(self, request_id: str, debtor: str, creditor: str, amount: Money, description: str) -> str:
        self._judge()
        if request_id in self.closed:
            raise PreconditionFailed("REQUEST_VOIDED", "closed by LookupHold")
        hold_id = self.place(request_id, debtor, creditor, amount).hold_id
        await self._then()
        return hold_id

    async def lookup_hold(self, request_id: str) -> str:
        self._judge()
        if request_id not in self.holds:
            self.closed.add(request_id)
            raise NotFound("hold request", request_id)
        return self.holds[request_id].hold_id

    async def held_funds(self, hold_id: str) -> HeldFunds:
        self._judge()
        return HeldFunds(hold_id, self.by_id(hold_id).transfer_id)

    async def capture_hold(self, request_id: str, hold_id: str) -> str:
        self._judge()
        if self.refuse_capture:
            raise PreconditionFailed("ACCOUNT_CLOSED", "the payout account is closed")
        return self.capture(hold_id)

    async def release_hold(self, request_id: str, hold_id: str) -> None:
        self._judge()
        self.by_id(hold_id).status = "RELEASED"

    async def reverse_transfer(self, request_id: str, transfer_id: str, reason: str) -> None:
        self._judge()
        self.reversed.append(transfer_id)


@dataclass
class Lending:
    loans: LendingUseCases
    ledger: FakeLedger


@asynccontextmanager
async def lending_under_test(tmp_path: Path) -> AsyncIterator[Lending]:
    """The lending context over a ledger where Ada and Bob hold an empty EUR account each."""
    ledger = FakeLedger(
        balances={LOAN_BOOK: 0, "acc_ada": 0, "acc_bob": 0},
        accounts={"acc_ada": PayoutAccount("cus_ada", "EUR"), "acc_bob": PayoutAccount("cus_bob", "EUR")},
    )
    fakes = {Accounts: ledger, Customers: FakeCustomers({"cus_ada", "cus_bob"}, managers={"cus_ada": "usr_rita"})}
    async with context_under_test(LendingModule, tmp_path, fakes) as context:
        yield Lending(context.resolve(LendingUseCases), ledger)


def key(request_id: str) -> IdempotencyKey:
    return IdempotencyKey(request_id, "test", request_id, "usr_admin")


EUR_5000 = Money("EUR", 500_000)
EUR_100 = Money("EUR", 10_000)


async def disbursed(lending: Lending) -> str:
    """Ada's loan of EUR 5,000.00, applied for, approved and disbursed by an admin."""
    with acting_as(ADMIN_CALLER):
        loan = await lending.loans.apply("cus_ada", "acc_ada", EUR_5000, 24, key("a1"))
        await lending.loans.approve(loan.loan_id, "0.05", key("ap1"))
        await lending.loans.disburse(loan.loan_id, key("d1"))
    return loan.loan_id
