"""Accounts and the ledger's rules. Pure: no I/O, no gRPC.

Sign convention: an account's balance is its credits minus its debits, for customer and
bank-internal accounts alike. Every transfer debits one account and credits another by the same
amount, so the balances of all accounts always sum to zero: total debits equal total credits.

Every refusal of the ledger is decided here, on the rows a use case's unit of work locked: an
account that is closed, in another currency, would cross its floor or the ledger's limit; a hold
resolved already or captured for more than it holds; a reversal of a reversal. The repository's
SQL repeats the arithmetic only as a guard (a guard that trips under the lock is a bug: Aborted).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from common.errors import NotFound, PermissionDenied, PreconditionFailed
from common.money import CURRENCY_EXPONENTS, MAX_MINOR, Money
from services.account.narrative import NO_REMITTANCE, EntryText, entry_texts
from services.account.narrative import Entry as Entry  # a statement's terms (narrative.py) are the ledger's too
from services.account.narrative import Remittance as Remittance


class AccountType(enum.Enum):
    PERSONAL_SAVINGS = "PERSONAL_SAVINGS"
    PERSONAL_CHECKING = "PERSONAL_CHECKING"
    BUSINESS_CHECKING = "BUSINESS_CHECKING"
    PREMIUM_CHECKING = "PREMIUM_CHECKING"
    INTERNAL = "INTERNAL"


CUSTOMER_TYPES = frozenset(t for t in AccountType if t is not AccountType.INTERNAL)


class Access(enum.Enum):
    """What a caller wants to do with an account."""

    READ = "read"
    DEBIT = "debit"  # move money out of it
    CREDIT = "credit"  # pay money into it


class AccountStatus(enum.Enum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class HoldStatus(enum.Enum):
    PLACED = "PLACED"
    CAPTURED = "CAPTURED"
    RELEASED = "RELEASED"


class InternalAccount(enum.Enum):
    """The bank's own accounts; one per currency. They have no floor."""

    CASH = "CASH"  # cash in and out (deposits, withdrawals)
    TREASURY = "TREASURY"  # the bank's funds (loans are paid from here)
    INTEREST_EXPENSE = "INTEREST_EXPENSE"  # interest paid to customers
    CLEARING = "CLEARING"  # money on its way to and from other banks
    FEE_INCOME = "FEE_INCOME"  # maintenance fees charged to customers
    LOAN_PRINCIPAL = "LOAN_PRINCIPAL"  # principal receivable: minus what borrowers owe
    INTEREST_INCOME = "INTEREST_INCOME"  # loan interest paid by borrowers
    PENALTY_INCOME = "PENALTY_INCOME"  # late fees paid by borrowers

    def account_id(self, currency: str) -> str:
        return f"acc_{self.value}_{currency}"


_INTERNAL_IDS = {kind.account_id(currency): kind for kind in InternalAccount for currency in CURRENCY_EXPONENTS}

# Who moves each of the bank's own accounts through the movements anyone may ask for (Transfer,
# PlaceHold, PostCharges): the context whose contract names it. The others move only through the
# account context's own RPCs, which name them: CASH by Deposit and Withdraw, INTEREST_EXPENSE by
# AccrueInterest, FEE_INCOME by ChargeMonthlyFees; TREASURY by none. Admins act through those.
MOVED_BY: dict[InternalAccount, frozenset[str]] = {
    InternalAccount.CLEARING: frozenset({"payment"}),  # money out to the network and back
    InternalAccount.LOAN_PRINCIPAL: frozenset({"lending"}),  # disbursements and repaid principal
    InternalAccount.INTEREST_INCOME: frozenset({"lending"}),
    InternalAccount.PENALTY_INCOME: frozenset({"lending"}),
}


def internal_kind(account_id: str) -> InternalAccount | None:
    """Which of the bank's own accounts `account_id` is; None for a customer's."""
    return _INTERNAL_IDS.get(account_id)


def require_movable(account_ids: Iterable[str], mover: str) -> None:
    """Refuses, before anything is written, a movement of one of the bank's own accounts by
    anyone its contract does not name: a customer paying into the loan book or the clearing
    account would break what those accounts mean (minus the principal owed, money at the network)."""
    for account_id in account_ids:
        kind = internal_kind(account_id)
        if kind is not None and mover not in MOVED_BY.get(kind, frozenset()):
            raise PermissionDenied(
                "INTERNAL_ACCOUNT",
                f"the bank's {kind.value} account is moved only by the contexts its contract names",
                {"account_id": account_id},
            )


# The bank's accounts the account context's own RPCs move (for an admin): their movements are
# the bank's to undo. The others belong to the contexts MOVED_BY names, which undo their own.
OWN_BOOKS = frozenset({InternalAccount.CASH, InternalAccount.FEE_INCOME, InternalAccount.INTEREST_EXPENSE})


def require_reversible(account_ids: Iterable[str], mover: str) -> None:
    """A reversal moves the same accounts back: refused, like the movement, for a caller the
    contract does not name, but for the account context's own books (a deposit taken in error)."""
    require_movable([a for a in account_ids if internal_kind(a) not in OWN_BOOKS], mover)


def require_party(account_id: str) -> None:
    """The bank's own accounts are nobody's payee nor anybody's payer: the contexts that move
    them do so through the movements their contracts name, never as a party to a payment."""
    if internal_kind(account_id) is not None:
        raise PermissionDenied(
            "INTERNAL_ACCOUNT", "the bank's own accounts neither make nor take payments", {"account_id": account_id}
        )


@dataclass(frozen=True)
class AccountFeatures:
    """What a product offers; amounts in the account's currency."""

    interest_bearing: bool = False
    annual_interest_rate: Decimal = Decimal("0")
    minimum_balance: int = 0  # minor units: the monthly fee is waived for a month the balance never fell below it
    monthly_fee: int = 0
    overdraft_protection: bool = False
    overdraft_limit: int = 0
    free_transactions_per_month: int = 0


@dataclass(frozen=True)
class Account:
    account_id: str
    customer_id: str
    type: AccountType
    status: AccountStatus
    currency: str
    features: AccountFeatures
    balance: int  # minor units: credits minus debits
    held: int  # minor units reserved by open holds
    opened_at: datetime

    @property
    def floor(self) -> int | None:
        """Lowest balance the account may reach after holds; None for bank-internal accounts."""
        if self.type is AccountType.INTERNAL:
            return None
        return -self.features.overdraft_limit if self.features.overdraft_protection else 0

    @property
    def available(self) -> int:
        """What may still be spent: balance minus holds, down to the floor."""
        floor = self.floor
        return self.balance - self.held - (floor if floor is not None else 0)

    def money(self, minor: int) -> Money:
        return Money(self.currency, minor)

    # --- the ledger's rules on one account ----------------------------------------------------

    def require_usable(self, currency: str) -> None:
        """Money moves only through an open account, in its own currency."""
        if self.status is AccountStatus.CLOSED:
            raise PreconditionFailed("ACCOUNT_CLOSED", f"account {self.account_id} is closed", {"account_id": self.account_id})
        if self.currency != currency:
            raise PreconditionFailed(
                "CURRENCY_MISMATCH",
                f"account {self.account_id} is in {self.currency}, not {currency}",
                {"account_id": self.account_id, "account_currency": self.currency},
            )

    def require_debit(self, amount: Money, *, release: int = 0) -> None:
        """`amount` may leave the account (after `release` of its holds is freed for it)."""
        self.require_usable(amount.currency)
        balance = self.balance - amount.minor
        if balance < -MAX_MINOR:
            raise balance_limit(self.account_id)
        floor = self.floor
        if floor is not None and balance - (self.held - release) < floor:
            raise self._insufficient()

    def require_credit(self, amount: Money) -> None:
        self.require_usable(amount.currency)
        if self.balance + amount.minor > MAX_MINOR:
            raise balance_limit(self.account_id)

    def require_reserve(self, amount: Money) -> None:
        """A hold of `amount` may be placed on the account."""
        self.require_usable(amount.currency)
        if self.held + amount.minor > MAX_MINOR:
            raise balance_limit(self.account_id)
        floor = self.floor
        if floor is not None and self.balance - self.held - amount.minor < floor:
            raise self._insufficient()

    def require_closable(self) -> None:
        if self.type is AccountType.INTERNAL:
            raise PreconditionFailed(
                "INTERNAL_ACCOUNT", "bank-internal accounts cannot be closed", {"account_id": self.account_id}
            )
        if self.status is AccountStatus.CLOSED:
            raise PreconditionFailed("ACCOUNT_CLOSED", "the account is already closed", {"account_id": self.account_id})
        if self.held or self.balance:
            raise PreconditionFailed(
                "ACCOUNT_HAS_OPEN_HOLDS" if self.held else "ACCOUNT_BALANCE_NOT_ZERO",
                f"only an account at zero balance without holds can be closed (balance "
                f"{self.money(self.balance)}, held {self.money(self.held)})",
                {"account_id": self.account_id},
            )

    def _insufficient(self) -> PreconditionFailed:
        available = self.money(self.available)
        return PreconditionFailed(
            "INSUFFICIENT_FUNDS",
            f"account {self.account_id} has {available} available",
            {"account_id": self.account_id, "available": available.amount},
        )


def balance_limit(account_id: str) -> PreconditionFailed:
    return PreconditionFailed(
        "BALANCE_LIMIT_EXCEEDED",
        f"the balance of account {account_id} would pass the ledger's limit of {MAX_MINOR} minor units",
        {"account_id": account_id, "limit_minor": str(MAX_MINOR)},
    )


@dataclass(frozen=True)
class Transfer:
    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    amount: Money
    description: str
    posted_at: datetime
    reverses_transfer_id: str = ""
    hold_id: str = ""
    reversed_by: str = ""  # the transfer that reversed this one, if any
    actor: str = ""  # whose authority posted it, through which contexts (common.audit.acting)
    remittance: Remittance = NO_REMITTANCE

    def entry_texts(self) -> tuple[EntryText, EntryText]:
        """What its debited and credited accounts' entries say (narrative.entry_texts)."""
        sides = [(a, kind.value if (kind := internal_kind(a)) else None) for a in (self.debit_account_id, self.credit_account_id)]
        return entry_texts(self.description, self.remittance, sides[0], sides[1])

    def reversal(self, reason: str) -> TransferOrder:
        """The order that undoes this transfer: the same amount back. Once only; never of a reversal."""
        if self.reverses_transfer_id:
            raise PreconditionFailed(
                "TRANSFER_IS_A_REVERSAL", "a reversal cannot be reversed; make a new transfer", {"transfer_id": self.transfer_id}
            )
        if self.reversed_by:
            raise PreconditionFailed(
                "TRANSFER_ALREADY_REVERSED", "the transfer was already reversed", {"transfer_id": self.transfer_id}
            )
        return TransferOrder(
            self.credit_account_id,
            self.debit_account_id,
            self.amount,
            reason or f"reversal of {self.transfer_id}",
            reverses_transfer_id=self.transfer_id,
            remittance=self.remittance,  # the payee a payment went to is who sent it back
        )


@dataclass(frozen=True)
class Hold:
    hold_id: str
    debit_account_id: str
    credit_account_id: str
    amount: Money
    status: HoldStatus
    description: str
    captured: Money | None = None
    transfer_id: str = ""
    owner_context: str = ""  # the context that placed it for a user; "" when placed directly
    placed_by: str = ""  # the authority it was placed on (SecurityContext.chain)
    placed_at: datetime | None = None
    remittance: Remittance = NO_REMITTANCE  # carried onto the transfer its capture posts

    def resolved_only_by_owner(self) -> bool:
        """A hold a context placed for its own process (a payment, a loan) is captured or
        released by that context alone: the account holder sees it but cannot take it back."""
        return bool(self.owner_context)

    def capture(self, amount: Money | None) -> Money:
        """What a capture of `amount` (None: all of it) posts; at most what is held, once."""
        captured = amount or self.amount
        if captured.currency != self.amount.currency:
            raise PreconditionFailed(
                "CURRENCY_MISMATCH",
                f"the hold is in {self.amount.currency}, not {captured.currency}",
                {"hold_id": self.hold_id, "hold_currency": self.amount.currency},
            )
        if captured.minor > self.amount.minor:
            raise PreconditionFailed(
                "CAPTURE_EXCEEDS_HOLD",
                f"at most {self.amount} can be captured",
                {"hold_id": self.hold_id, "held": self.amount.amount},
            )
        self.require_placed()
        return captured

    def require_placed(self) -> None:
        """A hold resolves (is captured or released) at most once."""
        if self.status is not HoldStatus.PLACED:
            raise PreconditionFailed(
                "HOLD_ALREADY_RESOLVED",
                f"the hold is already {self.status.value}",
                {"hold_id": self.hold_id, "status": self.status.value},
            )


@dataclass(frozen=True)
class TransferOrder:
    """A validated request to move money."""

    debit_account_id: str
    credit_account_id: str
    amount: Money
    description: str
    reverses_transfer_id: str = ""
    hold_id: str = ""
    remittance: Remittance = NO_REMITTANCE


def known(accounts: Mapping[str, Account], account_id: str) -> Account:
    if account_id not in accounts:
        raise NotFound("account", account_id)
    return accounts[account_id]


def require_posting(order: TransferOrder, accounts: Mapping[str, Account], *, release: int = 0) -> None:
    """The accounts can take the transfer: both known, the debit within its floor (once it frees
    `release` of its holds for it), both within the ledger's limit; judged in account id order."""
    if order.debit_account_id == order.credit_account_id:  # the api refuses it first; the ledger too
        raise PreconditionFailed("SAME_ACCOUNT", "money moves between two accounts", {"account_id": order.debit_account_id})
    for account_id in sorted({order.debit_account_id, order.credit_account_id}):
        if account_id == order.debit_account_id:
            known(accounts, account_id).require_debit(order.amount, release=release)
        else:
            known(accounts, account_id).require_credit(order.amount)


def require_holdable(order: TransferOrder, accounts: Mapping[str, Account]) -> None:
    """The debit account can reserve the amount, for an account that takes its currency."""
    known(accounts, order.debit_account_id).require_reserve(order.amount)
    known(accounts, order.credit_account_id).require_usable(order.amount.currency)


@dataclass(frozen=True)
class ChargeOrder:
    """A validated charge: the account debited once for the total, each line credited to one of
    the bank's own accounts (distinct, one currency)."""

    request_id: str
    account_id: str
    lines: tuple[tuple[InternalAccount, Money], ...]
    description: str

    @property
    def total(self) -> Money:
        return Money(self.lines[0][1].currency, sum(amount.minor for _, amount in self.lines))


@dataclass(frozen=True)
class Charge:
    """What became of a charge order: posted (its transfers, one per line) or rejected (why)."""

    request_id: str
    account_id: str
    total: Money
    charge_id: str = ""
    transfer_ids: tuple[str, ...] = ()
    rejection_reason: str = ""

    @property
    def posted(self) -> bool:
        return bool(self.charge_id)


def fee_chunk_overlap(start: str, last: str) -> PreconditionFailed:
    """A cursor inside a recorded chunk of fees: what that chunk charged after the cursor is not
    recorded apart, and charging it again would take a second fee."""
    return PreconditionFailed(
        "FEE_CHUNK_OVERLAP",
        f"the month's fees after {start or 'the first account'} up to {last} were charged as one chunk:"
        " resume from its start or its end",
        {"chunk_after_account_id": start, "chunk_last_account_id": last},
    )


def fee_due(monthly_fee: int, minimum_balance: int, lowest_balance: int) -> bool:
    """Whether a month's maintenance fee is charged: a fee is set, and the lowest balance of the
    month (carried in, and after every posting in it) fell below the minimum balance. The minimum
    balance never refuses a movement: it only decides the fee."""
    return monthly_fee > 0 and lowest_balance < minimum_balance


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountOpened:
    account: Account


@dataclass(frozen=True)
class AccountClosed:
    account_id: str
    customer_id: str
    at: datetime


@dataclass(frozen=True)
class TransferPosted:
    transfer: Transfer


AccountEvent = AccountOpened | AccountClosed | TransferPosted


def month_has_ended(month: date, today: date) -> bool:
    """Whether `month` (any day of it) is over on `today`: compared as (year, month), with no
    date arithmetic, so December 9999 is simply a month that has not ended."""
    return (month.year, month.month) < (today.year, today.month)


def day_has_begun(day: date, today: date) -> bool:
    """Whether a business date's interest may be posted: a day is accrued once it has begun."""
    return day <= today
