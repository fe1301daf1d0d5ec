"""The account context's use cases over a fake customer context: who may do what, what the ledger
refuses, and what a replayed request answers. The repository is the real one, on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from common.errors import AlreadyExists, NotFound, PermissionDenied, PreconditionFailed
from common.idempotency import IdempotencyKey
from common.money import Money
from common.security.context import RELATIONSHIP_MANAGER, SecurityContext, service_identity
from services.account.domain import Access, AccountType, ChargeOrder, HoldStatus, InternalAccount, TransferOrder
from services.account.module import AccountModule
from services.account.ports import Customers, CustomerStanding
from services.account.service import AccountUseCases
from tests.unit.contexts import ADMIN_CALLER, FIRST_PAGE, acting_as, context_under_test, customer_caller


@dataclass
class FakeCustomers(Customers):
    """The customer context as a table of standings."""

    standings: dict[str, CustomerStanding] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    refusing: set[str] = field(default_factory=set)  # customers the customer context refuses to tell about

    async def standing(self, customer_id: str) -> CustomerStanding:
        self.asked.append(customer_id)
        if customer_id in self.refusing:
            raise PermissionDenied("ACCESS_DENIED", "not for this caller")
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


async def test_the_banks_own_accounts_offer_no_product(accounts: AccountUseCases) -> None:
    """No interest, fee, minimum balance, overdraft or free transactions: an internal account is
    the ledger's, not a product's."""
    with acting_as(ADMIN_CALLER):
        treasury = await accounts.get_account(accounts.internal_account(InternalAccount.TREASURY, "EUR"))
    f = treasury.features
    assert (treasury.type, treasury.customer_id, treasury.floor) == (AccountType.INTERNAL, "", None)
    assert (f.interest_bearing, f.annual_interest_rate, f.minimum_balance, f.monthly_fee) == (False, 0, 0, 0)
    assert (f.overdraft_protection, f.overdraft_limit, f.free_transactions_per_month) == (False, 0, 0)


RITA = SecurityContext("usr_rita", "rita", (RELATIONSHIP_MANAGER,))  # Ada's relationship manager
UNKNOWN = "acc_00000000000000000000000000"


def relayed(context: str, customer_id: str) -> SecurityContext:
    """`context` relaying a call of the customer's."""
    return replace(customer_caller(customer_id), service=context, via=(context,))


def context_key(context: str, request_id: str, operation: str) -> IdempotencyKey:
    """A key in the scope of a context's requests, for the operation a lookup names."""
    return IdempotencyKey(request_id, operation, request_id, f"svc:{context}")


async def test_an_unknown_account_is_not_found_for_an_admin_and_denied_to_anyone_else(accounts: AccountUseCases) -> None:
    with acting_as(ADMIN_CALLER), pytest.raises(NotFound):
        await accounts.get_account(UNKNOWN)
    with acting_as(customer_caller("cus_ada")), pytest.raises(PermissionDenied):
        await accounts.get_account(UNKNOWN)
    with acting_as(customer_caller("cus_ada")), pytest.raises(NotFound):  # a payee: its existence is no secret
        await accounts.check_access(UNKNOWN, Access.CREDIT)


async def test_a_refusal_says_who_may_not_do_what(accounts: AccountUseCases) -> None:
    ada = await funded_account(accounts, "cus_ada", 0)
    with acting_as(customer_caller("cus_bob")):
        assert await _denied(accounts.check_access(ada, Access.DEBIT)) == "customer may not move money from this account"
        assert await _denied(accounts.check_access(ada, Access.READ)) == "customer may not read this account"
    with acting_as(service_identity("interest")):  # a context alone has no role
        assert await _denied(accounts.transfer(TransferOrder(ada, ada, eur(1), ""), key("t"))) == (
            "this caller may not move money from this account"
        )


async def _denied(call: Awaitable[object]) -> str:
    with pytest.raises(PermissionDenied) as refused:
        await call
    return refused.value.message


async def test_an_account_is_not_opened_for_a_customer_the_customer_context_keeps_from_the_caller(
    accounts: AccountUseCases, customers: FakeCustomers
) -> None:
    customers.refusing.add("cus_ada")
    with acting_as(ADMIN_CALLER), pytest.raises(PermissionDenied):
        await accounts.open_account("cus_ada", AccountType.PERSONAL_SAVINGS, "EUR", key("r1"))


async def test_a_context_reverses_only_the_capture_of_its_own_hold(accounts: AccountUseCases) -> None:
    ada, bob = await funded_account(accounts, "cus_ada", 10_000), await funded_account(accounts, "cus_bob", 0)
    with acting_as(relayed("payment", "cus_ada")):
        paid = await accounts.place_hold(TransferOrder(ada, bob, eur(1_000), "paid"), key("h1"), capture=True)
    with acting_as(customer_caller("cus_ada")):
        own = await accounts.place_hold(TransferOrder(ada, bob, eur(500), "her own"), key("h2"))
        _, captured = await accounts.capture_hold(own.hold_id, None, key("c2"))
        with pytest.raises(PermissionDenied):  # the capture of a hold she placed is hers, not a context's
            await accounts.reverse(captured.transfer_id, "mine", key("rev-own"))
    with acting_as(service_identity("lending")), pytest.raises(PermissionDenied):
        await accounts.reverse(paid.transfer_id, "not mine", key("rev-other"))
    with acting_as(service_identity("payment")):
        reversal = await accounts.reverse(paid.transfer_id, "undo", key("rev-1"))
    assert reversal.reverses_transfer_id == paid.transfer_id
    with acting_as(ADMIN_CALLER):
        assert (await accounts.get_account(ada)).balance == 10_000 - 500


async def test_who_sees_and_who_resolves_a_hold(accounts: AccountUseCases, customers: FakeCustomers) -> None:
    customers.standings["cus_ada"] = replace(VERIFIED, relationship_manager_id="usr_rita")
    ada, bob = await funded_account(accounts, "cus_ada", 10_000), await funded_account(accounts, "cus_bob", 0)
    with acting_as(relayed("payment", "cus_ada")):
        payments = await accounts.place_hold(TransferOrder(ada, bob, eur(1_000), "payment"), key("h1"))
    with acting_as(customer_caller("cus_ada")):
        own = await accounts.place_hold(TransferOrder(ada, bob, eur(500), "her own"), key("h2"))
        assert (await accounts.get_hold(payments.hold_id)).owner_context == "payment", "she sees the payment's hold"
    with acting_as(RITA):  # her manager reads both, resolves neither
        assert (await accounts.get_hold(own.hold_id)).hold_id == own.hold_id
        assert (await accounts.get_hold(payments.hold_id)).hold_id == payments.hold_id
        with pytest.raises(PermissionDenied) as owned:
            await accounts.release_hold(payments.hold_id, key("r1"))
        assert owned.value.reason == "HOLD_OWNED_BY_CONTEXT"
        with pytest.raises(PermissionDenied) as reader:
            await accounts.release_hold(own.hold_id, key("r2"))
        assert reader.value.reason == "ACCESS_DENIED"
    with acting_as(ADMIN_CALLER), pytest.raises(NotFound):
        await accounts.get_hold("hld_00000000000000000000000000")


async def test_a_context_looks_up_the_holds_and_charges_of_its_own_requests(accounts: AccountUseCases) -> None:
    ada = await funded_account(accounts, "cus_ada", 10_000)
    book = accounts.internal_account(InternalAccount.LOAN_PRINCIPAL, "EUR")
    with acting_as(relayed("lending", "cus_ada")):
        hold = await accounts.place_hold(TransferOrder(ada, book, eur(100), "held"), context_key("lending", "h1", "PlaceHold"))
        order = ChargeOrder("c1", ada, ((InternalAccount.INTEREST_INCOME, eur(250)),), "interest")
        [charge] = await accounts.post_charges([(order, context_key("lending", "c1", "PostCharges"))])
    with acting_as(service_identity("lending")):
        assert (await accounts.lookup_hold("h1")).hold_id == hold.hold_id
        assert (await accounts.lookup_charge("c1")).charge_id == charge.charge_id
        with pytest.raises(NotFound):
            await accounts.lookup_hold("never-sent")
        with pytest.raises(NotFound):
            await accounts.lookup_charge("never-sent")
    with acting_as(customer_caller("cus_ada")):
        with pytest.raises(PermissionDenied):
            await accounts.lookup_hold("h1")
        with pytest.raises(PermissionDenied):
            await accounts.lookup_charge("c1")


async def test_charges_are_posted_by_the_context_named_for_their_accounts_never_by_a_user_or_an_admin_alone(
    accounts: AccountUseCases,
) -> None:
    ada = await funded_account(accounts, "cus_ada", 10_000)

    def order(request_id: str) -> list[tuple[ChargeOrder, IdempotencyKey]]:
        return [(ChargeOrder(request_id, ada, ((InternalAccount.INTEREST_INCOME, eur(100)),), "interest"), key(request_id))]

    with acting_as(customer_caller("cus_ada")), pytest.raises(PermissionDenied):
        await accounts.post_charges(order("by-herself"))
    with acting_as(ADMIN_CALLER), pytest.raises(PermissionDenied) as alone:
        await accounts.post_charges(order("by-an-admin"))
    assert alone.value.reason == "INTERNAL_ACCOUNT"
    with acting_as(relayed("lending", "cus_ada")):
        assert [c.posted for c in await accounts.post_charges(order("by-lending-for-her"))] == [True]
    with acting_as(ADMIN_CALLER):
        assert (await accounts.get_account(ada)).balance == 10_000 - 100
