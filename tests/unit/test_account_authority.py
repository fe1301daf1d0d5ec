"""The account context's use cases keep the bank's own accounts to the contexts their contract
names, for every kind of them and every movement, whoever asks (generated from the contract table
`MOVED_BY`, so a kind or a mover added without a rule is caught); and charges are posted by admins
and relaying contexts only, for accounts the relayed user may debit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from common.errors import NotFound, PermissionDenied
from common.idempotency import IdempotencyKey
from common.security.context import RELATIONSHIP_MANAGER, SecurityContext
from services.account.domain import MOVED_BY, OWN_BOOKS, Access, ChargeOrder, InternalAccount, TransferOrder
from services.account.ports import CustomerStanding
from services.account.service import AccountUseCases
from tests.unit.contexts import ADMIN_CALLER, FIRST_PAGE, acting_as, customer_caller
from tests.unit.test_account_use_cases import (  # noqa: F401
    FakeCustomers,
    accounts,
    customers,
    eur,
    funded_account,
    key,
    relayed,
)

KINDS = [k for k in InternalAccount if k is not InternalAccount.CASH]  # cash moves by Deposit and Withdraw


async def _reason(caller: SecurityContext, act: Callable[[], Awaitable[object]]) -> str:
    """The reason `act` is refused with as `caller` ("" if it is not refused for authority)."""
    with acting_as(caller):
        try:
            await act()
        except PermissionDenied as refused:
            return refused.reason
    return ""


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.value)
async def test_nobody_moves_an_internal_account_the_contract_does_not_give_them(
    accounts: AccountUseCases,  # noqa: F811
    kind: InternalAccount,
) -> None:
    ada = await funded_account(accounts, "cus_ada", 10_000)
    internal = accounts.internal_account(kind, "EUR")
    cash = accounts.internal_account(InternalAccount.CASH, "EUR")
    her = customer_caller("cus_ada")

    def into(request_id: str) -> TransferOrder:
        return TransferOrder(ada, internal, eur(1), request_id)

    refusals = {
        "transfer into it, by its payer": await _reason(her, lambda: accounts.transfer(into("t"), key("t"))),
        "hold towards it, by its payer": await _reason(her, lambda: accounts.place_hold(into("h"), key("h"))),
        "deposit into it, by an admin": await _reason(
            ADMIN_CALLER, lambda: accounts.deposit(TransferOrder(cash, internal, eur(1), "d"), key("d"))
        ),
        "withdraw from it, by an admin": await _reason(
            ADMIN_CALLER, lambda: accounts.withdraw(TransferOrder(internal, cash, eur(1), "w"), key("w"))
        ),
        "debit access to it, for an admin": await _reason(ADMIN_CALLER, lambda: accounts.check_access(internal, Access.DEBIT)),
        "credit access to it, for its payer": await _reason(her, lambda: accounts.check_access(internal, Access.CREDIT)),
    }
    assert refusals == dict.fromkeys(refusals, "INTERNAL_ACCOUNT")
    with acting_as(ADMIN_CALLER):
        assert (await accounts.get_account(ada)).balance == 10_000, "nothing moved"


@pytest.mark.parametrize("kind", [k for k in KINDS if MOVED_BY.get(k)], ids=lambda k: k.value)
async def test_the_context_named_moves_it_and_an_admin_alone_does_not_undo_that(
    accounts: AccountUseCases,  # noqa: F811
    kind: InternalAccount,
) -> None:
    """A hold towards the account, captured at once, by the context its contract names (for the
    payer); an admin reversing it alone is refused, as the movement itself would have been."""
    ada = await funded_account(accounts, "cus_ada", 10_000)
    internal = accounts.internal_account(kind, "EUR")
    mover = sorted(MOVED_BY[kind])[0]
    with acting_as(relayed(mover, "cus_ada")):
        hold = await accounts.place_hold(TransferOrder(ada, internal, eur(250), "by contract"), key("c"), capture=True)
    assert hold.transfer_id
    assert await _reason(ADMIN_CALLER, lambda: accounts.reverse(hold.transfer_id, "", key("undo"))) == "INTERNAL_ACCOUNT"
    with acting_as(ADMIN_CALLER):
        assert (await accounts.get_account(ada)).balance == 10_000 - 250


async def test_an_admin_undoes_the_account_contexts_own_books(accounts: AccountUseCases) -> None:  # noqa: F811
    assert InternalAccount.CASH in OWN_BOOKS
    ada = await funded_account(accounts, "cus_ada", 10_000)  # a deposit from CASH: the bank's own books
    with acting_as(ADMIN_CALLER):
        deposit = (await accounts.entries(ada, FIRST_PAGE))[0][-1]
        reversed_ = await accounts.reverse(deposit.transfer_id, "taken in error", key("undo"))
        assert reversed_.reverses_transfer_id == deposit.transfer_id
        assert (await accounts.get_account(ada)).balance == 0
        with pytest.raises(NotFound):
            await accounts.reverse("trf_unknown", "", key("undo-nothing"))


def _charge(account: str, request_id: str) -> list[tuple[ChargeOrder, IdempotencyKey]]:
    return [(ChargeOrder(request_id, account, ((InternalAccount.INTEREST_INCOME, eur(100)),), "interest"), key(request_id))]


async def test_charges_are_for_admins_and_relaying_contexts_and_for_accounts_the_user_may_debit(
    accounts: AccountUseCases,  # noqa: F811
    customers: FakeCustomers,  # noqa: F811
) -> None:
    ada = await funded_account(accounts, "cus_ada", 10_000)
    customers.standings["cus_ada"] = CustomerStanding(True, "usr_rm")  # her manager reads her accounts, and no more
    manager = SecurityContext("usr_rm", "rm", (RELATIONSHIP_MANAGER,), service="lending", via=("lending",))
    assert await _reason(customer_caller("cus_ada"), lambda: accounts.post_charges(_charge(ada, "self"))) == "ACCESS_DENIED"
    assert await _reason(relayed("lending", "cus_bob"), lambda: accounts.post_charges(_charge(ada, "bob"))) == "ACCESS_DENIED"
    assert await _reason(manager, lambda: accounts.post_charges(_charge(ada, "rm"))) == "ACCESS_DENIED"
    with acting_as(ADMIN_CALLER):
        assert (await accounts.get_account(ada)).balance == 10_000, "nothing charged"
