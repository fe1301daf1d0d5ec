"""The ledger's units of work (services/account/movements.py) on the real repository, on SQLite:
what each one posts, refuses, records in the audit trail and announces, read back from the
context's own tables and outbox."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from common.errors import NotFound, PreconditionFailed
from common.idempotency import IdempotencyKey
from kernel.interest import InterestTier
from og.audit.v1.audit_pb2 import ChangeRecorded
from services.account import movements
from services.account.domain import AccountStatus, AccountType, ChargeOrder, InternalAccount, TransferOrder
from services.account.module import AccountModule
from services.account.ports import Customers
from services.account.repository import AccountUnit, AccountUnits
from services.account.service import AccountUseCases
from tests.unit.contexts import ADMIN_CALLER, FIRST_PAGE, NOW, acting_as, context_under_test
from tests.unit.test_account_use_cases import VERIFIED, FakeCustomers, context_key, eur, funded_account, key, relayed

INTEREST = InternalAccount.INTEREST_INCOME.account_id("EUR")
PENALTY = InternalAccount.PENALTY_INCOME.account_id("EUR")


@dataclass
class Ledger:
    accounts: AccountUseCases
    units: AccountUnits

    async def outbox(self) -> list[tuple[str, bytes]]:
        async def read(uow: AccountUnit) -> list[tuple[str, bytes]]:
            rows = await uow.tx.fetchall("SELECT event_type, payload FROM outbox ORDER BY seq")
            return [(str(r["event_type"]), bytes(r["payload"])) for r in rows]

        return await self.units.read(read)

    async def announced(self) -> Counter[str]:
        """The events in the outbox by type, the audit records by their operation."""
        found: Counter[str] = Counter()
        for event_type, payload in await self.outbox():
            is_audit = event_type == ChangeRecorded.DESCRIPTOR.full_name
            found[f"audit:{ChangeRecorded.FromString(payload).operation}" if is_audit else event_type.rsplit(".", 1)[1]] += 1
        return found

    async def balance(self, account_id: str) -> int:
        with acting_as(ADMIN_CALLER):
            return (await self.accounts.get_account(account_id)).balance

    async def statement(self, account_id: str) -> list[tuple[int, int]]:
        with acting_as(ADMIN_CALLER):
            entries, _ = await self.accounts.entries(account_id, FIRST_PAGE)
        return [(e.amount.minor, e.balance_after.minor) for e in entries]


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    customers = FakeCustomers({"cus_ada": VERIFIED, "cus_bob": VERIFIED})
    async with context_under_test(AccountModule, tmp_path, {Customers: customers}) as context:
        yield Ledger(context.resolve(AccountUseCases), context.resolve(AccountUnits))


def _charge(request_id: str, account_id: str, *lines: tuple[InternalAccount, int]) -> tuple[ChargeOrder, IdempotencyKey]:
    order = ChargeOrder(request_id, account_id, tuple((kind, eur(minor)) for kind, minor in lines), request_id)
    return order, context_key("lending", request_id, "PostCharges")


async def test_a_chunk_of_charges_debits_each_order_on_what_the_one_before_left(ledger: Ledger) -> None:
    ada = await funded_account(ledger.accounts, "cus_ada", 1_000)
    before = await ledger.announced()
    chunk = [
        _charge("c3", ada, (InternalAccount.INTEREST_INCOME, 300)),
        _charge("c1", ada, (InternalAccount.INTEREST_INCOME, 400), (InternalAccount.PENALTY_INCOME, 200)),
        _charge("c2", ada, (InternalAccount.INTEREST_INCOME, 500)),
    ]
    with acting_as(relayed("lending", "cus_ada")):
        first = await ledger.accounts.post_charges(chunk)
    assert [(c.request_id, c.posted, c.rejection_reason) for c in first] == [
        ("c3", True, ""),
        ("c1", True, ""),
        ("c2", False, "INSUFFICIENT_FUNDS"),  # in request order c1 (600), c2 (500: 400 left) refused, c3 (300)
    ]
    assert [len(c.transfer_ids) for c in first] == [1, 2, 0]
    assert await ledger.statement(ada) == [(1_000, 1_000), (-400, 600), (-200, 400), (-300, 100)]
    assert await ledger.statement(INTEREST) == [(400, 400), (300, 700)]
    assert await ledger.statement(PENALTY) == [(200, 200)]
    assert [await ledger.balance(a) for a in (ada, INTEREST, PENALTY)] == [100, 700, 200]
    announced = (await ledger.announced()) - before
    assert announced == Counter({"TransferPosted": 3, "audit:PostCharges": 2})

    with acting_as(ADMIN_CALLER):  # money arrives: the refused order still never posts
        cash = ledger.accounts.internal_account(InternalAccount.CASH, "EUR")
        await ledger.accounts.deposit(TransferOrder(cash, ada, eur(5_000), "cash in"), key("more"))
    with acting_as(relayed("lending", "cus_ada")):
        again = await ledger.accounts.post_charges(chunk)
    assert again == first, "every order answers as it did"
    assert await ledger.balance(ada) == 5_100


async def test_a_charge_refused_for_the_banks_side_posts_nothing_of_the_chunk(ledger: Ledger) -> None:
    ada = await funded_account(ledger.accounts, "cus_ada", 1_000)

    async def fill_interest_income(uow: AccountUnit) -> None:
        await uow.tx.execute("UPDATE accounts SET balance_minor = ? WHERE account_id = ?", 10**18 - 100, INTEREST)

    await ledger.units.write(fill_interest_income)
    with acting_as(relayed("lending", "cus_ada")), pytest.raises(PreconditionFailed) as refused:
        await ledger.accounts.post_charges([_charge("c1", ada, (InternalAccount.INTEREST_INCOME, 500))])
    assert refused.value.reason == "BALANCE_LIMIT_EXCEEDED" and refused.value.metadata["account_id"] == INTEREST
    assert await ledger.balance(ada) == 1_000


async def test_an_account_closes_empty_once_and_says_so(ledger: Ledger) -> None:
    ada = await funded_account(ledger.accounts, "cus_ada", 100)
    with acting_as(ADMIN_CALLER):
        with pytest.raises(PreconditionFailed) as refused:
            await ledger.accounts.close_account(ada, key("close-1"))
        assert refused.value.reason == "ACCOUNT_BALANCE_NOT_ZERO"
        empty = await ledger.accounts.open_account("cus_ada", AccountType.PERSONAL_CHECKING, "EUR", key("open-2"))
        before = await ledger.announced()
        closed = await ledger.accounts.close_account(empty.account_id, key("close-2"))
        assert closed.status is AccountStatus.CLOSED
        assert await ledger.accounts.close_account(empty.account_id, key("close-2")) == closed, "a replay answers the same"
        with pytest.raises(PreconditionFailed) as twice:
            await ledger.accounts.close_account(empty.account_id, key("close-3"))
        assert twice.value.reason == "ACCOUNT_CLOSED"
    assert (await ledger.announced()) - before == Counter({"AccountClosed": 1, "audit:test": 1})


async def test_an_event_opens_one_default_account_however_often_it_is_delivered(ledger: Ledger) -> None:
    before = await ledger.announced()
    opened = [await ledger.accounts.open_default_account("cus_bob", "evt-1", "customer-events") for _ in range(3)]
    assert opened == [True, False, False]
    with acting_as(ADMIN_CALLER):
        accounts, _ = await ledger.accounts.list_accounts("cus_bob", FIRST_PAGE)
    assert len(accounts) == 1
    assert (await ledger.announced()) - before == Counter({"AccountOpened": 1, "audit:OpenDefaultAccount": 1})


async def test_every_movement_announces_its_transfer(ledger: Ledger) -> None:
    before = await ledger.announced()
    ada = await funded_account(ledger.accounts, "cus_ada", 1_000)  # opened, then a deposit
    bob = await funded_account(ledger.accounts, "cus_bob", 0)
    with acting_as(ADMIN_CALLER):
        await ledger.accounts.transfer(TransferOrder(ada, bob, eur(10), "lunch"), key("t1"))
    announced = (await ledger.announced()) - before
    assert (announced["AccountOpened"], announced["TransferPosted"]) == (2, 2)


async def test_a_hold_that_is_not_there_is_not_found_inside_the_unit(ledger: Ledger) -> None:
    """The use cases find the hold before the unit; the unit does not trust that it still exists."""
    absent = key("release-absent")
    with pytest.raises(NotFound):
        await ledger.units.write(lambda uow: movements.release_hold(uow, "hld_absent", absent))
    with pytest.raises(NotFound):
        await ledger.units.write(lambda uow: movements.capture_hold(uow, "hld_absent", None, key("capture-absent"), NOW))


async def test_an_interest_chunk_is_recorded_once(ledger: Ledger) -> None:
    with acting_as(ADMIN_CALLER):
        await ledger.accounts.open_account("cus_ada", AccountType.PERSONAL_SAVINGS, "EUR", key("open"))
    before = await ledger.announced()
    with acting_as(ADMIN_CALLER):
        await ledger.accounts.accrue_interest(NOW.date(), "EUR", (InterestTier(None, Decimal("0.01")),), "", 100, key("i-1"))
    assert (await ledger.announced()) - before == Counter({"audit:AccrueInterest": 1})


async def test_a_chunk_of_fees_that_would_pass_the_ledgers_limit_is_refused_whole(ledger: Ledger) -> None:
    """A business account below its minimum balance all May owes its fee; the bank's fee income
    account is one unit short of the limit: the chunk is BALANCE_LIMIT_EXCEEDED, nothing charged."""
    fees = InternalAccount.FEE_INCOME.account_id("EUR")
    with acting_as(ADMIN_CALLER):
        shop = await ledger.accounts.open_account("cus_ada", AccountType.BUSINESS_CHECKING, "EUR", key("open-shop"))

    async def opened_in_april_and_fees_nearly_full(uow: AccountUnit) -> None:
        await uow.tx.execute(
            "UPDATE accounts SET opened_at = ? WHERE account_id = ?", "2026-04-01T00:00:00+00:00", shop.account_id
        )
        await uow.tx.execute("UPDATE accounts SET balance_minor = ? WHERE account_id = ?", 10**18 - 1, fees)

    await ledger.units.write(opened_in_april_and_fees_nearly_full)
    with acting_as(ADMIN_CALLER), pytest.raises(PreconditionFailed) as refused:
        await ledger.accounts.charge_monthly_fees(date(2026, 5, 1), "EUR", "", 100, key("fees-may"))
    assert (refused.value.reason, refused.value.metadata["account_id"]) == ("BALANCE_LIMIT_EXCEEDED", fees)
    assert await ledger.balance(shop.account_id) == 0


async def test_a_chunk_of_fees_is_recorded_once(ledger: Ledger) -> None:
    with acting_as(ADMIN_CALLER):
        shop = await ledger.accounts.open_account("cus_ada", AccountType.BUSINESS_CHECKING, "EUR", key("open-shop"))

    async def opened_in_april(uow: AccountUnit) -> None:
        await uow.tx.execute(
            "UPDATE accounts SET opened_at = ? WHERE account_id = ?", "2026-04-01T00:00:00+00:00", shop.account_id
        )

    await ledger.units.write(opened_in_april)
    before = await ledger.announced()
    with acting_as(ADMIN_CALLER):
        await ledger.accounts.charge_monthly_fees(date(2026, 5, 1), "EUR", "", 100, key("fees-may"))
    announced = await ledger.announced() - before
    assert {kind: n for kind, n in announced.items() if kind.startswith("audit:")} == {"audit:ChargeMonthlyFees": 1}
