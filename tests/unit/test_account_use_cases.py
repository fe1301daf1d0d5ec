"""The account context's use cases over a fake customer context: who may do what, what the ledger
refuses, and what a replayed request answers. The repository is the real one, on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from common.errors import AlreadyExists, NotFound, PermissionDenied, PreconditionFailed
from common.idempotency import IdempotencyKey
from common.money import Money
from common.security.context import service_identity
from services.account.domain import AccountType, HoldStatus, InternalAccount, TransferOrder
from services.account.module import AccountModule
from services.account.ports import Customers, CustomerStanding
from services.account.service import AccountUseCases
from tests.unit.contexts import ADMIN_CALLER, FIRST_PAGE, acting_as, context_under_test, customer_caller


@dataclass
class FakeCustomers(Customers):
    """The customer context as a table of standings."""

    standings: dict[str, CustomerStanding] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def standing(self, customer_id: str) -> CustomerStanding:
        self.asked.append(customer_id)
        found = self.standings.get(customer_id)
        if found is None:
            raise NotFound("customer", customer_id)
        return found

    async def relationship_manager(self, customer_id: str) -> str | None:
        found = self.standings.get(customer_id)
        return None if found is None else found.relationship_manager_id


VERIFIED = CustomerStanding(kyc_verified=True, relationship_manager_id="")


@pytest.fixture
def customers() -> FakeCustomers:
    return FakeCustomers({"cus_ada": VERIFIED, "cus_bob": VERIFIED, "cus_new": CustomerStanding(False, "")})


@pytest.fixture
async def accounts(tmp_path: Path, customers: FakeCustomers) -> AsyncIterator[AccountUseCases]:
    async with context_under_test(AccountModule, tmp_path, {Customers: customers}) as context:
        yield context.resolve(AccountUseCases)


def key(request_id: str, content: str = "") -> IdempotencyKey:
    return IdempotencyKey(request_id, "test", content or request_id, "usr_admin")


def eur(minor: int) -> Money:
    return Money("EUR", minor)


async def funded_account(accounts: AccountUseCases, customer_id: str, minor: int) -> str:
    """A savings account (no overdraft: its floor is zero) with `minor` deposited."""
    with acting_as(ADMIN_CALLER):
        account = await accounts.open_account(customer_id, AccountType.PERSONAL_SAVINGS, "EUR", key(f"open-{customer_id}"))
        cash = accounts.internal_account(InternalAccount.CASH, "EUR")
        if minor:
            await accounts.deposit(TransferOrder(cash, account.account_id, eur(minor), "cash in"), key(f"in-{customer_id}"))
    return account.account_id


async def test_an_account_opens_for_a_verified_customer_only(accounts: AccountUseCases) -> None:
    with acting_as(ADMIN_CALLER):
        opened = await accounts.open_account("cus_ada", AccountType.PERSONAL_SAVINGS, "EUR", key("r1"))
        assert (opened.customer_id, opened.type, opened.balance) == ("cus_ada", AccountType.PERSONAL_SAVINGS, 0)
        assert opened.features.interest_bearing
        with pytest.raises(PreconditionFailed) as refused:
            await accounts.open_account("cus_new", AccountType.PERSONAL_SAVINGS, "EUR", key("r2"))
        assert refused.value.reason == "CUSTOMER_NOT_VERIFIED"
        assert await accounts.list_accounts("cus_new", FIRST_PAGE) == ([], "")
        with pytest.raises(NotFound):
            await accounts.list_accounts("cus_nobody", FIRST_PAGE)


async def test_a_customer_opens_and_sees_her_own_accounts_not_anothers(
    accounts: AccountUseCases, customers: FakeCustomers
) -> None:
    with acting_as(customer_caller("cus_ada")):
        await accounts.open_account("cus_ada", AccountType.PERSONAL_CHECKING, "EUR", key("r1"))
        with pytest.raises(PermissionDenied):
            await accounts.open_account("cus_bob", AccountType.PERSONAL_CHECKING, "EUR", key("r2"))
    assert customers.asked == ["cus_ada"]  # refused before the customer context was asked


async def test_a_transfer_moves_money_once_per_request_id(accounts: AccountUseCases) -> None:
    ada, bob = await funded_account(accounts, "cus_ada", 10_000), await funded_account(accounts, "cus_bob", 0)
    order = TransferOrder(ada, bob, eur(2_500), "rent")
    with acting_as(customer_caller("cus_ada")):
        first = await accounts.transfer(order, key("pay-1"))
        again = await accounts.transfer(order, key("pay-1"))
        assert again.transfer_id == first.transfer_id
        with pytest.raises(AlreadyExists):
            await accounts.transfer(TransferOrder(ada, bob, eur(1), "rent"), key("pay-1", "other content"))
        assert (await accounts.get_account(ada)).balance == 7_500
    with acting_as(ADMIN_CALLER):
        assert (await accounts.get_account(bob)).balance == 2_500


async def test_the_ledger_refuses_what_the_domain_refuses_and_writes_nothing(accounts: AccountUseCases) -> None:
    ada, bob = await funded_account(accounts, "cus_ada", 1_000), await funded_account(accounts, "cus_bob", 0)
    with acting_as(customer_caller("cus_ada")):
        with pytest.raises(PreconditionFailed) as refused:
            await accounts.transfer(TransferOrder(ada, bob, eur(1_001), "too much"), key("pay-1"))
        assert refused.value.reason == "INSUFFICIENT_FUNDS"
        assert (await accounts.get_account(ada)).balance == 1_000
        # The refusal is the request id's answer for good; a new request takes a new id.
        with pytest.raises(PreconditionFailed) as again:
            await accounts.transfer(TransferOrder(ada, bob, eur(1_001), "too much"), key("pay-1"))
        assert again.value.reason == "INSUFFICIENT_FUNDS"
        with pytest.raises(AlreadyExists):
            await accounts.transfer(TransferOrder(ada, bob, eur(1_000), "all of it"), key("pay-1", "all"))
        await accounts.transfer(TransferOrder(ada, bob, eur(1_000), "all of it"), key("pay-2", "all"))


async def test_only_admins_take_cash_and_nobody_spends_from_anothers_account(accounts: AccountUseCases) -> None:
    ada, bob = await funded_account(accounts, "cus_ada", 1_000), await funded_account(accounts, "cus_bob", 1_000)
    cash = accounts.internal_account(InternalAccount.CASH, "EUR")
    with acting_as(customer_caller("cus_bob")):
        with pytest.raises(PermissionDenied):
            await accounts.deposit(TransferOrder(cash, bob, eur(1), "free money"), key("dep"))
        with pytest.raises(PermissionDenied):
            await accounts.transfer(TransferOrder(ada, bob, eur(1), "theft"), key("steal"))
    with acting_as(ADMIN_CALLER):
        assert (await accounts.get_account(ada)).balance == 1_000


async def test_a_hold_reserves_then_captures_part_and_resolves_once(accounts: AccountUseCases) -> None:
    ada, bob = await funded_account(accounts, "cus_ada", 10_000), await funded_account(accounts, "cus_bob", 0)
    with acting_as(customer_caller("cus_ada")):
        hold = await accounts.place_hold(TransferOrder(ada, bob, eur(6_000), "deposit"), key("h1"))
        with pytest.raises(PreconditionFailed) as refused:
            await accounts.transfer(TransferOrder(ada, bob, eur(4_001), "more"), key("t1"))
        assert refused.value.reason == "INSUFFICIENT_FUNDS"
        captured, transfer = await accounts.capture_hold(hold.hold_id, eur(5_000), key("c1"))
        assert (captured.status, transfer.amount) == (HoldStatus.CAPTURED, eur(5_000))
        with pytest.raises(PreconditionFailed) as again:
            await accounts.release_hold(hold.hold_id, key("r1"))
        assert again.value.reason == "HOLD_ALREADY_RESOLVED"
        assert (await accounts.get_account(ada)).available == 5_000


async def test_a_hold_a_context_placed_is_resolved_by_that_context_alone(accounts: AccountUseCases) -> None:
    ada, bob = await funded_account(accounts, "cus_ada", 10_000), await funded_account(accounts, "cus_bob", 0)
    payment_for_ada = replace(customer_caller("cus_ada"), service="payment", via=("payment",))
    with acting_as(payment_for_ada):
        hold = await accounts.place_hold(TransferOrder(ada, bob, eur(3_000), "payment"), key("h1"))
    with acting_as(customer_caller("cus_ada")), pytest.raises(PermissionDenied) as refused:
        await accounts.release_hold(hold.hold_id, key("r1"))
    assert refused.value.reason == "HOLD_OWNED_BY_CONTEXT"
    with acting_as(service_identity("payment")):
        assert (await accounts.release_hold(hold.hold_id, key("r2"))).status is HoldStatus.RELEASED


async def test_a_transfer_is_reversed_once(accounts: AccountUseCases) -> None:
    ada, bob = await funded_account(accounts, "cus_ada", 1_000), await funded_account(accounts, "cus_bob", 0)
    with acting_as(customer_caller("cus_ada")):
        transfer = await accounts.transfer(TransferOrder(ada, bob, eur(400), "oops"), key("t1"))
        with pytest.raises(PermissionDenied):
            await accounts.reverse(transfer.transfer_id, "mine", key("rev-0"))
    with acting_as(ADMIN_CALLER):
        reversal = await accounts.reverse(transfer.transfer_id, "", key("rev-1"))
        with pytest.raises(PreconditionFailed) as twice:
            await accounts.reverse(transfer.transfer_id, "", key("rev-2"))
        assert twice.value.reason == "TRANSFER_ALREADY_REVERSED"
        with pytest.raises(PreconditionFailed) as of_reversal:
            await accounts.reverse(reversal.transfer_id, "", key("rev-3"))
        assert of_reversal.value.reason == "TRANSFER_IS_A_REVERSAL"
        assert (await accounts.get_account(ada)).balance == 1_000
