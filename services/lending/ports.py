"""What the lending context needs from other contexts, in its own terms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from common.money import Money


@dataclass(frozen=True)
class PayoutAccount:
    """What lending needs to know of the account a loan is paid into."""

    customer_id: str
    currency: str


@dataclass(frozen=True)
class HeldFunds:
    hold_id: str
    captured_by: str  # the transfer that captured the hold; "" while it is not captured


@dataclass(frozen=True)
class Debit:
    """A payment on a loan taken from the borrower's account, split between the bank's loan
    accounts (principal receivable, interest income, late fee income)."""

    request_id: str
    account_id: str
    principal: Money
    interest: Money
    late_fees: Money
    description: str


@dataclass(frozen=True)
class DebitOutcome:
    request_id: str
    posted: bool
    reason: str  # why not posted: INSUFFICIENT_FUNDS, ACCOUNT_CLOSED, ...


class Accounts(Protocol):
    """The accounts and their ledger (the account context). Every call carries the authority of
    the task making it: the admin's on the request path, this context's own when a saga is resumed
    in the background. A refusal is the AppError the account context answered; no answer is
    Unavailable or DeadlineExceeded."""

    async def payout_account(self, account_id: str) -> PayoutAccount: ...

    async def loan_book(self, currency: str) -> str:
        """The bank's loan principal account in `currency`: loans are paid from it and repaid to it."""

    async def debit(self, debits: list[Debit]) -> list[DebitOutcome]:
        """Takes each payment whole or not at all (up to 500 in one call), idempotent by request id."""

    async def debit_taken(self, request_id: str) -> bool:
        """Asked as this context alone of a debit whose answer was lost: whether it was taken.
        "No" is final: the request id is closed and can no longer take anything."""

    async def place_hold(self, request_id: str, debtor: str, creditor: str, amount: Money, description: str) -> str:
        """Reserves `amount` of the debtor's funds for the creditor; the hold's id."""

    async def lookup_hold(self, request_id: str) -> str:
        """The id of the hold the PlaceHold of `request_id` placed; NotFound (and the request id
        closed for good) when it placed none."""

    async def held_funds(self, hold_id: str) -> HeldFunds: ...

    async def capture_hold(self, request_id: str, hold_id: str) -> str:
        """Posts the held funds to the creditor; the transfer's id."""

    async def release_hold(self, request_id: str, hold_id: str) -> None: ...

    async def reverse_transfer(self, request_id: str, transfer_id: str, reason: str) -> None: ...


class Customers(Protocol):
    """The bank's customers (the customer context)."""

    async def exists(self, customer_id: str) -> bool:
        """Asked as this context itself: whether the customer context knows the customer."""

    async def manager_of(self, customer_id: str) -> str:
        """Asked as this context itself: the relationship manager assigned ("" for none, or no such customer)."""
