"""Charges in SQL: a chunk of orders, each debiting one account for its lines and crediting
the bank's accounts; a refused order keeps its refusal on its key."""

from __future__ import annotations

from datetime import datetime

from common.audit import acting, record_changes
from common.db.base import Tx, stored
from common.db.idempotency import claim, refuse, resource_or_void
from common.errors import PreconditionFailed
from common.idempotency import IdempotencyKey
from common.ids import new_id
from common.money import Money
from services.account.domain import (
    Charge,
    ChargeOrder,
    Transfer,
    TransferPosted,
)
from services.account.messages import OUTGOING
from services.account.postings import INSERT_ENTRY, INSERT_TRANSFER, credit_balance, debit_balance, entry_rows, transfer_row

# --- charges --------------------------------------------------------------------------------


async def select_charge(tx: Tx, charge_id: str) -> Charge:
    row = await tx.fetchone(
        "SELECT charge_id, request_id, account_id, total_minor, currency, transfer_ids FROM charges WHERE charge_id = ?",
        charge_id,
    )
    row = stored(row, charge_id)
    return Charge(
        row["request_id"],
        row["account_id"],
        Money(row["currency"], row["total_minor"]),
        row["charge_id"],
        tuple(row["transfer_ids"].split(",")),
    )


async def lookup_charge(tx: Tx, scope: str, request_id: str) -> Charge | None:
    charge_id = await resource_or_void(tx, scope, request_id, "PostCharges")
    return await select_charge(tx, charge_id) if charge_id else None


async def post_charges(tx: Tx, orders: list[tuple[ChargeOrder, IdempotencyKey, str]], at: datetime) -> list[Charge]:
    """Debits each order's account for its total (in account order, so that two chunks never
    wait on each other in a cycle), then credits the bank's accounts once each for all the lines
    that posted. A rejected order's key keeps its refusal: the order never posts, however often it
    is sent again (a debit refused once and taken by a retry would be money no caller recorded)."""
    answers: dict[str, Charge] = {}
    debited: list[tuple[ChargeOrder, str, int]] = []  # order, charge id, the account's balance after
    for order, key, charge_id in sorted(orders, key=lambda o: (o[0].account_id, o[0].request_id)):
        try:
            replayed = await claim(tx, key, charge_id, record=False)
        except PreconditionFailed as voided:  # refused before, or closed by its context: it never posts
            answers[order.request_id] = Charge(order.request_id, order.account_id, order.total, rejection_reason=voided.reason)
            continue
        if replayed is not None:
            answers[order.request_id] = await select_charge(tx, replayed)
            continue
        try:
            balance = await debit_balance(tx, order.account_id, order.total)
        except PreconditionFailed as rejected:  # the key keeps the refusal: a retry hears it, never posts
            await refuse(tx, key, rejected)
            answers[order.request_id] = Charge(order.request_id, order.account_id, order.total, rejection_reason=rejected.reason)
            continue
        debited.append((order, charge_id, balance))
    for order, charge_id, _ in debited:
        answers[order.request_id] = Charge(
            order.request_id,
            order.account_id,
            order.total,
            charge_id,
            tuple(new_id("trf") for _ in order.lines),
        )
    await record_changes(tx, "PostCharges", [(charge_id, order.request_id) for order, charge_id, _ in debited])
    await _credit_lines(tx, [(order, answers[order.request_id], balance) for order, _, balance in debited], at)
    return [answers[order.request_id] for order, _, _ in orders]


async def _credit_lines(tx: Tx, debited: list[tuple[ChargeOrder, Charge, int]], at: datetime) -> None:
    """The bank's side of the posted charges: each internal account credited once with its lines'
    sum, then the transfers (each announced, TransferPosted), their entries (each with its running
    balance) and the charges."""
    sums: dict[tuple[str, str], int] = {}
    for order, _, _ in debited:
        for internal, amount in order.lines:
            side = (internal.account_id(amount.currency), amount.currency)
            sums[side] = sums.get(side, 0) + amount.minor
    running = {
        account_id: await credit_balance(tx, account_id, Money(currency, total)) - total
        for (account_id, currency), total in sorted(sums.items())
    }
    transfers: list[Transfer] = []
    entries: list[tuple[object, ...]] = []
    charges: list[tuple[object, ...]] = []
    actor = acting(tx.context)
    for order, charge, balance in debited:
        customer = balance + order.total.minor
        for (internal, amount), transfer_id in zip(order.lines, charge.transfer_ids, strict=True):
            account_id = internal.account_id(amount.currency)
            customer -= amount.minor
            running[account_id] += amount.minor
            transfer = Transfer(transfer_id, order.account_id, account_id, amount, order.description, at, actor=actor)
            transfers.append(transfer)
            entries += entry_rows(transfer, customer, running[account_id])
        charges.append(
            (
                charge.charge_id,
                order.request_id,
                order.account_id,
                order.total.minor,
                order.total.currency,
                ",".join(charge.transfer_ids),
                at.isoformat(),
            )
        )
    await tx.executemany(INSERT_TRANSFER, [transfer_row(t) for t in transfers])
    await tx.executemany(INSERT_ENTRY, entries)
    await OUTGOING.append(tx, [TransferPosted(t) for t in transfers])
    await tx.executemany(
        "INSERT INTO charges (charge_id, request_id, account_id, total_minor, currency, transfer_ids, posted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        charges,
    )
