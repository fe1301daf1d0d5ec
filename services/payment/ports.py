"""What the payment context needs from other contexts, in its own terms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from common.money import Money
from services.payment.domain import NO_REMITTANCE, Payment, Remittance
from services.payment.reconciliation import BookedTransfer, NetworkSettlement


@dataclass(frozen=True)
class FoundHold:
    """A hold a request of this context placed."""

    hold_id: str
    released: bool  # released already: the funds are no longer reserved
    transfer_id: str = ""  # the transfer that captured it; "" while it is not captured


@dataclass(frozen=True)
class HoldOrder:
    """One hold of a set placed together (a batch's line)."""

    request_id: str
    debtor: str
    creditor: str
    amount: Money
    description: str
    remittance: Remittance = NO_REMITTANCE


class Accounts(Protocol):
    """The accounts and their ledger (the account context). Every call carries the authority of
    the task making it: the caller's on the request path, this context's own in the background.
    A refusal is the AppError the account context answered (PermissionDenied, NotFound,
    PreconditionFailed, ...); no answer is Unavailable or DeadlineExceeded."""

    async def require_debit(self, account_id: str) -> None:
        """Whether the caller may move money out of the account (nothing changes)."""

    async def require_read(self, account_id: str) -> None: ...

    async def debit_currency(self, account_id: str) -> str:
        """Whether the caller may move money out of the account, and its currency."""

    async def require_payee(self, account_id: str) -> None:
        """Whether the account exists to be paid into (NotFound if not, to anyone)."""

    async def clearing_account(self, currency: str) -> str:
        """The bank's account for money on its way to other banks, in `currency`."""

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
        """Reserves `amount` of the debtor's funds for the creditor (`capture`: and posts them to
        the creditor in the same step); the ledger keeps `remittance` with the entries it posts."""

    async def place_holds(self, orders: list[HoldOrder]) -> list[FoundHold]:
        """Reserves every order's funds in one step, or none (a refusal of one refuses all): each
        hold is the one `place_hold` with its request id would place (lookup_hold finds it)."""

    async def lookup_hold(self, request_id: str) -> FoundHold:
        """The hold the PlaceHold of `request_id` placed; NotFound (and the request id closed for
        good) when it placed none."""

    async def capture_hold(self, request_id: str, hold_id: str) -> str:
        """Posts the held funds to the creditor; the transfer's id."""

    async def release_hold(self, request_id: str, hold_id: str) -> None: ...

    async def credits_of(self, account_id: str) -> list[BookedTransfer]:
        """Every credit booked to the account (what reconciliation compares)."""


class NetworkUnavailable(Exception):
    """The payment network gave no answer, or is not being called (its circuit is open): passing."""


class NetworkRefused(Exception):
    """The payment network refused the call itself (not the payment): final for this payment."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class NetworkAnswer:
    settled: bool
    reject_reason: str = ""


class PaymentNetwork(Protocol):
    """VelocityPay, the network that reaches other banks."""

    def accepts_calls(self) -> bool:
        """Whether a submission now would be attempted (the network is believed reachable)."""

    async def submit(self, payment: Payment) -> NetworkAnswer:
        """Settles or rejects an external payment; NetworkUnavailable or NetworkRefused otherwise.
        Submitting a payment twice never pays it twice (the network deduplicates by its id)."""

    async def settlements(self) -> list[NetworkSettlement]:
        """The network's settlement report (Unavailable when it does not answer)."""
