"""Reconciliation with the payment network: what the network settled against what the ledger
booked to the clearing accounts. Pure, like the domain it belongs to."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.money import Money
from services.payment.domain import IN_FLIGHT, Payment, PaymentStatus

# --- reconciliation with the payment network ---------------------------------------------------

MAX_DISCREPANCIES = 1000


@dataclass(frozen=True)
class NetworkSettlement:
    """A payment the network accepted: settled (money left the bank) or rejected."""

    payment_id: str
    settled: bool
    amount: Money


@dataclass(frozen=True)
class BookedTransfer:
    """A credit of the clearing account in the ledger: money booked as gone to the network."""

    transfer_id: str
    amount: Money


@dataclass(frozen=True)
class Discrepancy:
    kind: str
    payment_id: str = ""
    transfer_id: str = ""
    detail: str = ""


@dataclass
class Reconciliation:
    network_settled: int = 0
    booked_transfers: int = 0
    matched: int = 0
    in_flight: int = 0
    discrepancies: list[Discrepancy] = field(default_factory=list)
    truncated: bool = False

    def found(self, discrepancy: Discrepancy) -> None:
        if len(self.discrepancies) < MAX_DISCREPANCIES:
            self.discrepancies.append(discrepancy)
        else:
            self.truncated = True


def reconcile(network: list[NetworkSettlement], payments: list[Payment], booked: list[BookedTransfer]) -> Reconciliation:
    """Every settled network payment booked exactly once for its amount, every booked transfer
    settled; a payment an operator must finish is listed too."""
    result = Reconciliation(network_settled=sum(s.settled for s in network), booked_transfers=len(booked))
    by_id = {p.payment_id: p for p in payments}
    bookings: dict[str, list[BookedTransfer]] = {}
    for b in booked:
        bookings.setdefault(b.transfer_id, []).append(b)
    known = {s.payment_id for s in network}
    for s in network:
        payment = by_id.get(s.payment_id)
        if s.settled:
            _check_settled(result, s, payment, bookings)
        elif payment is not None and payment.status is PaymentStatus.COMPLETED:
            result.found(Discrepancy("BOOKED_NOT_SETTLED", payment.payment_id, payment.transfer_id, "the network rejected it"))
    paid = {p.transfer_id: p for p in payments if p.status is PaymentStatus.COMPLETED and p.transfer_id}
    for transfer_id in bookings:
        payment = paid.get(transfer_id)
        if payment is None:
            result.found(
                Discrepancy("BOOKED_WITHOUT_PAYMENT", transfer_id=transfer_id, detail="a clearing credit no payment made")
            )
        elif payment.payment_id not in known:
            result.found(Discrepancy("BOOKED_NOT_SETTLED", payment.payment_id, transfer_id, "the network has no record of it"))
    for p in payments:
        if p.status is PaymentStatus.NEEDS_OPERATOR:
            result.found(Discrepancy("NEEDS_OPERATOR", p.payment_id, p.transfer_id, p.failure_reason))
    return result


def _check_settled(
    result: Reconciliation, s: NetworkSettlement, payment: Payment | None, bookings: dict[str, list[BookedTransfer]]
) -> None:
    if payment is None:
        result.found(Discrepancy("SETTLED_UNKNOWN_PAYMENT", s.payment_id, detail=f"the network settled {s.amount}"))
    elif payment.status in IN_FLIGHT:
        result.in_flight += 1
    elif payment.status is not PaymentStatus.COMPLETED:
        result.found(
            Discrepancy("SETTLED_NOT_BOOKED", payment.payment_id, detail=f"settled, but the payment is {payment.status.value}")
        )
    elif not bookings.get(payment.transfer_id):
        result.found(Discrepancy("TRANSFER_MISSING", payment.payment_id, payment.transfer_id, "no such clearing credit"))
    elif len(bookings[payment.transfer_id]) > 1:
        result.found(Discrepancy("BOOKED_TWICE", payment.payment_id, payment.transfer_id, "booked more than once"))
    elif bookings[payment.transfer_id][0].amount != s.amount or payment.amount != s.amount:
        result.found(
            Discrepancy(
                "AMOUNT_MISMATCH",
                payment.payment_id,
                payment.transfer_id,
                f"network {s.amount}, ledger {bookings[payment.transfer_id][0].amount}",
            )
        )
    else:
        result.matched += 1
