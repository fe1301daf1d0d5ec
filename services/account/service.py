"""Use cases of the account context: opening and closing accounts, moving money, holds,
statements, and the bulk postings. Input arrives validated (api.py); each use case authorizes
first, then the repository applies what the domain decides, idempotent by request_id."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from common.cache.codecs import TextCodec
from common.cache.registry import Caches
from common.clock import Clock
from common.db.keyset import Page
from common.di import BaseComponent, og_component
from common.errors import FieldViolation, NotFound, PermissionDenied, PreconditionFailed, ValidationFailed
from common.idempotency import IdempotencyKey
from common.ids import new_id
from common.money import CURRENCY_EXPONENTS, Money
from common.pagination import PageRequest
from common.security.context import ADMIN, SecurityContext, current_caller
from common.security.policy import denied, require_customer_access, require_role, started_by, unknown
from kernel.interest import BANKS_DAY, InterestTier
from services.account import movements
from services.account.bulk_fees import FeeChunk
from services.account.bulk_postings import AccrualChunk
from services.account.domain import (
    Access,
    Account,
    AccountClosed,
    AccountEvent,
    AccountFeatures,
    AccountOpened,
    AccountStatus,
    AccountType,
    Charge,
    ChargeOrder,
    Entry,
    Hold,
    InternalAccount,
    Transfer,
    TransferOrder,
    day_has_begun,
    month_has_ended,
    require_movable,
    require_party,
    require_reversible,
)
from services.account.ports import Customers
from services.account.repository import AccountUnit, AccountUnits
from services.account.statements import StatementRange, TrialLine, TrialTotals

PRODUCTS_FILE = Path(__file__).parent / "products.toml"
ACCOUNT_PREFIX = "acc"
DEFAULT_ACCOUNT = (AccountType.PERSONAL_CHECKING, "EUR")


@og_component()
class AccountFactory(BaseComponent):
    """Builds accounts of each product with the features configured for it."""

    def __init__(self) -> None:
        self._products: dict[str, dict[str, Any]] = {}  # products.toml

    async def initialize(self) -> None:
        self._products = tomllib.loads(PRODUCTS_FILE.read_text(encoding="utf-8"))

    def features(self, type_: AccountType, currency: str) -> AccountFeatures:
        product = self._products.get(type_.value)
        if product is None:
            raise ValidationFailed([FieldViolation("type", f"unsupported account type {type_.value}")])

        def minor(name: str) -> int:
            return Money.parse(currency, str(product[name])).minor

        return AccountFeatures(
            interest_bearing=bool(product["interest_bearing"]),
            annual_interest_rate=Decimal(str(product["annual_interest_rate"])),
            minimum_balance=minor("minimum_balance"),
            monthly_fee=minor("monthly_fee"),
            overdraft_protection=bool(product["overdraft_protection"]),
            overdraft_limit=minor("overdraft_limit"),
            free_transactions_per_month=int(product["free_transactions_per_month"]),
        )

    @staticmethod
    def internal(currencies: list[str], at: datetime) -> list[Account]:
        """The bank's own accounts, one of each kind per currency: no features, no floor."""
        return [
            Account(kind.account_id(c), "", AccountType.INTERNAL, AccountStatus.OPEN, c, AccountFeatures(), 0, 0, at)
            for kind in InternalAccount
            for c in currencies
        ]

    def create(self, customer_id: str, type_: AccountType, currency: str, at: datetime) -> Account:
        return Account(
            account_id=new_id(ACCOUNT_PREFIX),
            customer_id=customer_id,
            type=type_,
            status=AccountStatus.OPEN,
            currency=currency,
            features=self.features(type_, currency),
            balance=0,
            held=0,
            opened_at=at,
        )


@og_component()
class AccountUseCases(BaseComponent):
    """Accounts and the ledger's use cases. Every write is authorized first, then idempotent by
    request_id (in the caller's scope)."""

    def __init__(
        self,
        units: AccountUnits,
        factory: AccountFactory,
        customers: Customers,
        clock: Clock,
        caches: Caches,
    ) -> None:
        self._units = units
        self._factory = factory
        self._customers = customers
        self._clock = clock
        self._owners = caches.create("account-ownership", TextCodec())  # account -> "customer currency": never changes
        self._managers = caches.create("customer-manager", TextCodec())  # customer -> RM: invalidated by event

    # --- access ------------------------------------------------------------------------------

    async def _assigned(self, caller: SecurityContext, customer_id: str) -> bool:
        """Whether `caller` manages `customer_id`, asked of the customer context (which owns the
        assignment) under this context's own identity, and cached."""
        manager = await self._manager_of(customer_id)
        return bool(manager) and manager == caller.user_id

    async def _manager_of(self, customer_id: str) -> str | None:
        """The customer's relationship manager ("" for none; None for an unknown customer), cached."""
        return await self._managers.get(customer_id, lambda: self._customers.relationship_manager(customer_id))

    async def forget_manager(self, customer_id: str) -> None:
        await self._managers.invalidate(customer_id)

    async def _ownership(self, account_id: str) -> tuple[str, str] | None:
        """(customer, currency) of an account (neither ever changes), cached; None if unknown."""

        async def load() -> str | None:
            account = await self._units.read(lambda uow: uow.accounts.get(account_id))
            return None if account is None else f"{account.customer_id} {account.currency}"

        found = await self._owners.get(account_id, load)
        if found is None:
            return None
        customer, _, currency = found.partition(" ")
        return customer, currency

    async def _require_account(self, account_id: str, *, write: bool, action: str) -> tuple[str, str]:
        """The caller may read (write: debit or change) the account; its (customer, currency). An
        unknown account answers a caller who may not read every account exactly as somebody else's does."""
        ownership = await self._ownership(account_id)
        if ownership is None:
            raise unknown("account", account_id, action)
        await require_customer_access(ownership[0], assigned=self._assigned, write=write, action=action)
        return ownership

    async def _transfer(self, transfer_id: str) -> Transfer | None:
        return await self._units.read(lambda uow: uow.transfers.get(transfer_id))

    async def _hold(self, hold_id: str) -> Hold | None:
        return await self._units.read(lambda uow: uow.holds.get(hold_id))

    async def initialize(self) -> None:
        internal = self._factory.internal(sorted(CURRENCY_EXPONENTS), self._clock.now())
        await self._units.write(lambda uow: uow.accounts.add_missing(internal))

    async def check_access(self, account_id: str, access: Access) -> str:
        """Side-effect free: whether the caller may do `access` on the account; its currency. Anyone
        may pay into a customer's account that exists, so for a payee its existence is no secret."""
        if access is Access.CREDIT:
            ownership = await self._ownership(account_id)
            if ownership is None:
                raise NotFound("account", account_id)
            require_party(account_id)
            return ownership[1]
        if access is Access.DEBIT:
            require_party(account_id)
        action = "move money from this account" if access is Access.DEBIT else "read this account"
        return (await self._require_account(account_id, write=access is Access.DEBIT, action=action))[1]

    # --- accounts -----------------------------------------------------------------------------

    async def open_account(self, customer_id: str, type_: AccountType, currency: str, key: IdempotencyKey) -> Account:
        await require_customer_access(customer_id, assigned=self._assigned, write=True, action="open accounts for this customer")
        refused = await self._unverified(customer_id)
        account = self._factory.create(customer_id, type_, currency, self._clock.now())
        return await self._units.write(lambda uow: movements.open_account(uow, account, key, [AccountOpened(account)], refused))

    async def open_default_account(self, customer_id: str, event_id: str, inbox: str) -> bool:
        """Reaction to a customer onboarded (or cleared) VERIFIED: exactly one default account per
        event, remembered in the `inbox` of the consumer that handled it."""
        type_, currency = DEFAULT_ACCOUNT
        account = self._factory.create(customer_id, type_, currency, self._clock.now())
        return await self._units.write(
            lambda uow: movements.open_for_event(uow, account, inbox, event_id, [AccountOpened(account)])
        )

    async def _unverified(self, customer_id: str) -> PreconditionFailed | None:
        """CUSTOMER_NOT_VERIFIED unless the customer context says the KYC is verified: a refusal
        the request's key keeps (a replay once the customer is cleared still answers it), None
        when the account may be opened."""
        try:
            standing = await self._customers.standing(customer_id)
        except PermissionDenied as refused:
            raise denied("open accounts for this customer") from refused
        if standing.kyc_verified:
            return None
        return PreconditionFailed(
            "CUSTOMER_NOT_VERIFIED", "only customers with verified KYC may open accounts", {"customer_id": customer_id}
        )

    async def get_account(self, account_id: str) -> Account:
        await self._require_account(account_id, write=False, action="read this account")
        account = await self._units.read(lambda uow: uow.accounts.get(account_id))
        if account is None:
            raise NotFound("account", account_id)
        return account

    async def list_accounts(self, customer_id: str, request: PageRequest) -> tuple[list[Account], str]:
        await require_customer_access(customer_id, assigned=self._assigned, action="list this customer's accounts")
        page = await self._units.read(lambda uow: uow.accounts.page(customer_id, request.after_seq, request.limit))
        if not page.items and request.after is None and await self._manager_of(customer_id) is None:
            raise NotFound("customer", customer_id)  # an empty list of a customer nobody knows would hide a typo
        return page.items, request.next_token(page.next_after)

    async def close_account(self, account_id: str, key: IdempotencyKey) -> Account:
        owner, _ = await self._require_account(account_id, write=True, action="close this account")
        now = self._clock.now()
        events: list[AccountEvent] = [AccountClosed(account_id, owner, now)]
        return await self._units.write(lambda uow: movements.close_account(uow, account_id, key, now, events))

    # --- movements ----------------------------------------------------------------------------

    async def deposit(self, order: TransferOrder, key: IdempotencyKey) -> Transfer:
        """Cash in is handled by the bank (admins), not by account holders nor by any context."""
        require_role(ADMIN, action="take cash deposits")
        require_movable((order.credit_account_id,), current_caller().service)
        return await self._post(order, key)

    async def withdraw(self, order: TransferOrder, key: IdempotencyKey) -> Transfer:
        """Cash out: whoever may spend from the account, into the bank's cash account."""
        require_movable((order.debit_account_id,), current_caller().service)
        await self._require_account(order.debit_account_id, write=True, action="move money from this account")
        return await self._post(order, key)

    async def transfer(self, order: TransferOrder, key: IdempotencyKey) -> Transfer:
        """Whoever may spend from the debited account, between accounts that are not the bank's
        own unless the caller's context is named for them (a payment to the clearing account)."""
        require_movable((order.debit_account_id, order.credit_account_id), current_caller().service)
        await self._require_account(order.debit_account_id, write=True, action="move money from this account")
        return await self._post(order, key)

    async def _post(self, order: TransferOrder, key: IdempotencyKey) -> Transfer:
        now = self._clock.now()
        return await self._units.write(lambda uow: movements.transfer(uow, order, key, now))

    async def get_transfer(self, transfer_id: str) -> Transfer:
        transfer = await self._transfer(transfer_id)
        if transfer is None:
            raise unknown("transfer", transfer_id, "read this transfer")
        for side in (transfer.debit_account_id, transfer.credit_account_id):
            try:
                await self._require_account(side, write=False, action="read this transfer")
                return transfer
            except PermissionDenied:
                continue
        raise denied("read this transfer")

    async def reverse(self, transfer_id: str, reason: str, key: IdempotencyKey) -> Transfer:
        """Admins reverse any transfer; a context reverses only the capture of its own hold (it
        undoes what it did, e.g. a loan disbursement compensated)."""
        caller = current_caller()
        transfer = await self._transfer(transfer_id)
        if not caller.has_role(ADMIN):
            hold = await self._hold(transfer.hold_id) if transfer and transfer.hold_id else None
            if hold is None or not caller.service or hold.owner_context != caller.service:
                raise denied("reverse this transfer")
        elif transfer is not None and not caller.service:  # an admin alone undoes the bank's own books only
            require_reversible((transfer.debit_account_id, transfer.credit_account_id), caller.service)
        now = self._clock.now()
        return await self._units.write(lambda uow: movements.reverse(uow, transfer_id, reason, key, now))

    # --- holds --------------------------------------------------------------------------------

    async def place_hold(self, order: TransferOrder, key: IdempotencyKey, *, capture: bool = False) -> Hold:
        """Reserves funds with the authority of whoever may debit the account (`capture`: and
        posts them at once, which needs no more than a transfer does). A context placing it for a
        user owns it: only that context resolves it."""
        require_movable((order.debit_account_id, order.credit_account_id), current_caller().service)
        await self._require_account(order.debit_account_id, write=True, action="reserve funds of this account")
        caller, now = current_caller(), self._clock.now()
        return await self._units.write(
            lambda uow: movements.place_hold(uow, order, key, now, caller.service, caller.chain, capture=capture)
        )

    async def place_holds(self, orders: list[tuple[TransferOrder, IdempotencyKey]]) -> list[Hold]:
        """PlaceHold for a set, all or none (bulk payments): every debited account judged first."""
        caller, now = current_caller(), self._clock.now()
        require_movable(sorted({a for o, _ in orders for a in (o.debit_account_id, o.credit_account_id)}), caller.service)
        for debtor in sorted({order.debit_account_id for order, _ in orders}):
            await self._require_account(debtor, write=True, action="reserve funds of this account")
        return await self._units.write(lambda uow: movements.place_holds(uow, orders, now, caller.service, caller.chain))

    async def _hold_for(self, hold_id: str, *, resolve: bool) -> Hold:
        """The hold, if the caller may see it (resolve: and capture or release it)."""
        action = "resolve this hold" if resolve else "read this hold"
        hold = await self._hold(hold_id)
        if hold is None:
            raise unknown("hold", hold_id, action)
        caller = current_caller()
        if hold.resolved_only_by_owner() and caller.service == hold.owner_context:
            return hold
        await self._require_account(hold.debit_account_id, write=resolve and not hold.resolved_only_by_owner(), action=action)
        if resolve and hold.resolved_only_by_owner():
            raise PermissionDenied(
                "HOLD_OWNED_BY_CONTEXT",
                f"the {hold.owner_context} context placed this hold; only it captures or releases it",
                {"hold_id": hold_id, "owner_context": hold.owner_context},
            )
        return hold

    async def get_hold(self, hold_id: str) -> Hold:
        return await self._hold_for(hold_id, resolve=False)

    async def capture_hold(self, hold_id: str, amount: Money | None, key: IdempotencyKey) -> tuple[Hold, Transfer]:
        await self._hold_for(hold_id, resolve=True)
        now = self._clock.now()
        return await self._units.write(lambda uow: movements.capture_hold(uow, hold_id, amount, key, now))

    async def release_hold(self, hold_id: str, key: IdempotencyKey) -> Hold:
        await self._hold_for(hold_id, resolve=True)
        return await self._units.write(lambda uow: movements.release_hold(uow, hold_id, key))

    async def lookup_hold(self, request_id: str) -> Hold:
        """For a context that lost PlaceHold's answer: the hold its request placed, or a definite
        "none, and never" (the request id is closed). Users retry PlaceHold itself instead."""
        caller = current_caller()
        if not caller.service:
            raise denied("look up holds by request id (contexts only; retry PlaceHold with the same request_id)")
        hold = await self._units.write(lambda uow: movements.lookup_hold(uow, caller.principal, request_id))
        if hold is None:
            raise NotFound("hold request", request_id)
        return hold

    # --- charges ------------------------------------------------------------------------------

    async def post_charges(self, orders: list[tuple[ChargeOrder, IdempotencyKey]]) -> list[Charge]:
        """For the bank's own processes: admins, and contexts for the user they relay. Every
        account must be the caller's to debit (BANKS_DAY's collection: it exists), all judged first."""
        caller = current_caller()
        if not caller.service and ADMIN not in caller.roles:
            raise denied("post charges (admins and contexts only)")
        mandated = caller.service == "lending" and started_by(caller, BANKS_DAY)
        accounts = sorted({order.account_id for order, _ in orders})  # read at once: the reads share their trips
        await asyncio.gather(*(self._require_account(a, write=not mandated, action="charge this account") for a in accounts))
        credited = {kind.account_id(amount.currency) for order, _ in orders for kind, amount in order.lines}
        require_movable(sorted(credited), current_caller().service)
        now = self._clock.now()
        return await self._units.write(lambda uow: movements.post_charges(uow, orders, now))

    async def lookup_charge(self, request_id: str) -> Charge:
        """For a context that lost PostCharges' answer: the charge its order posted, or a definite
        "none, and never" (the request id is closed)."""
        caller = current_caller()
        if not caller.service:
            raise denied("look up charges by request id (contexts only)")
        charge = await self._units.write(lambda uow: movements.lookup_charge(uow, caller.principal, request_id))
        if charge is None:
            raise NotFound("charge request", request_id)
        return charge

    async def holds(self, account_id: str, request: PageRequest) -> tuple[list[Hold], str]:
        return await self._account_page(account_id, request, lambda uow: uow.holds.page)

    # --- interest and statements --------------------------------------------------------------

    async def accrue_interest(
        self, business_date: date, currency: str, tiers: tuple[InterestTier, ...], after: str, limit: int, key: IdempotencyKey
    ) -> AccrualChunk:
        """Bulk interest posting: an admin's (directly, or relayed by the interest context's batch),
        for a day that has begun, to the accounts opened on or before it. Whoever asks is known
        before the day is looked at."""
        require_role(ADMIN, action="post interest", or_started_by=BANKS_DAY)
        today = self._clock.today()
        if not day_has_begun(business_date, today):
            raise ValidationFailed(
                [FieldViolation("business_date", f"must not be after today ({today}): a day is accrued once it has begun")]
            )
        day, now = business_date.isoformat(), self._clock.now()
        return await self._units.write(lambda uow: movements.accrue_interest(uow, key, day, currency, tiers, (after, limit), now))

    async def charge_monthly_fees(self, month: date, currency: str, after: str, limit: int, key: IdempotencyKey) -> FeeChunk:
        """One chunk of a month's maintenance fees (admins, known before the month is looked at;
        a month that has ended)."""
        require_role(ADMIN, action="charge fees", or_started_by=BANKS_DAY)
        today = self._clock.today()
        if not month_has_ended(month, today):
            raise ValidationFailed([FieldViolation("month", f"must have ended (today is {today})")])
        first_day, now = month.replace(day=1), self._clock.now()
        return await self._units.write(lambda uow: movements.charge_fees(uow, key, first_day, currency, (after, limit), now))

    async def entries(self, account_id: str, request: PageRequest) -> tuple[list[Entry], str]:
        return await self._account_page(account_id, request, lambda uow: uow.transfers.entries)

    async def statement(
        self, account_id: str, first: date, last: date, newest_first: bool, request: PageRequest
    ) -> tuple[str, StatementRange, list[Entry], str]:
        """The days first..last (UTC) of an account, for whoever may read it: its currency, the range
        (balances at both ends, sums), one page of its entries and the next page's token."""
        currency = (await self._require_account(account_id, write=False, action="read this account"))[1]
        start, end = f"{first}T00:00:00+00:00", f"{last}T24:00:00+00:00"  # 24:00: no day after 9999-12-31
        page_at = (request.after_seq, request.limit)
        within, page = await self._units.read(lambda uow: uow.statements.statement(account_id, start, end, page_at, newest_first))
        return currency, within, page.items, request.next_token(page.next_after)

    async def trial_balance(self, currency: str, request: PageRequest) -> tuple[list[TrialLine], TrialTotals, str]:
        """Every account of a currency with its balance, one page, and the sums of all (admins)."""
        require_role(ADMIN, action="read the trial balance")
        page, totals = await self._units.read(
            lambda uow: uow.statements.trial_balance(currency, request.after_key, request.limit)
        )
        return page.items, totals, request.next_token(page.next_after)

    def internal_account(self, kind: InternalAccount, currency: str) -> str:
        """The id of one of the bank's own accounts: formed here, so that no other context types it."""
        return kind.account_id(currency)

    async def _account_page(
        self,
        account_id: str,
        request: PageRequest,
        fetch: Callable[[AccountUnit], Callable[[str, int, int], Awaitable[Page[Any, int]]]],
    ) -> tuple[list[Any], str]:
        """One page of what belongs to an account (its entries, its holds): for whoever may read it."""
        await self._require_account(account_id, write=False, action="read this account")
        page = await self._units.read(lambda uow: fetch(uow)(account_id, request.after_seq, request.limit))
        return page.items, request.next_token(page.next_after)
