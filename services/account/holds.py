"""Holds in SQL: funds reserved, then captured into a transfer or released, each once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from common.db.base import Row, Tx, stored
from common.db.idempotency import once
from common.errors import Aborted
from common.idempotency import IdempotencyKey
from common.money import MAX_MINOR, Money
from services.account.domain import (
    Hold,
    HoldStatus,
    Transfer,
    TransferOrder,
)
from services.account.postings import (
    DECISIONS,
    decided,
    post_transfer,
    require_account,
    require_hold,
    select_hold,
    stored_transfer,
)
from services.account.tables import (
    HOLD_COLUMNS,
)

# --- holds ----------------------------------------------------------------------------------


async def place_hold(
    tx: Tx,
    order: TransferOrder,
    hold_id: str,
    key: IdempotencyKey,
    at: datetime,
    owner: str,
    placed_by: str,
    capture_as: str | None,
) -> Hold:
    """Reserves the funds; with `capture_as` (a transfer id) posts them instead, and the hold is
    recorded captured: one unit of work for a caller that would capture at once."""

    def place() -> Awaitable[Hold]:
        return _place(tx, order, hold_id, at, owner, placed_by, capture_as)

    return await once(tx, key, hold_id, place, lambda done: _stored_hold(tx, done))


async def _stored_hold(tx: Tx, hold_id: str) -> Hold:
    return stored(await select_hold(tx, hold_id), hold_id)


async def _place(
    tx: Tx, order: TransferOrder, hold_id: str, at: datetime, owner: str, placed_by: str, capture_as: str | None
) -> Hold:
    if capture_as is None:
        await _reserve(tx, order)
        status, captured = HoldStatus.PLACED, None
    else:  # posted as a transfer is: both accounts locked in one order, so no deadlock
        await post_transfer(tx, replace(order, hold_id=hold_id), capture_as, at)
        status, captured = HoldStatus.CAPTURED, order.amount.minor
    await tx.execute(
        f"INSERT INTO holds ({HOLD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        hold_id,
        order.debit_account_id,
        order.credit_account_id,
        order.amount.minor,
        order.amount.currency,
        status.value,
        order.description,
        captured,
        capture_as,
        owner,
        placed_by,
        at.isoformat(),
    )
    return await _stored_hold(tx, hold_id)


async def _reserve(tx: Tx, order: TransferOrder) -> None:
    amount = order.amount

    async def reserve() -> Row | None:
        return await tx.fetchone(
            "UPDATE accounts SET held_minor = held_minor + ? WHERE account_id = ? AND status = 'OPEN' AND currency = ?"
            " AND held_minor + ? <= ? AND (floor_minor IS NULL OR balance_minor - held_minor - ? >= floor_minor)"
            " RETURNING held_minor",
            amount.minor,
            order.debit_account_id,
            amount.currency,
            amount.minor,
            MAX_MINOR,
            amount.minor,
        )

    await decided(tx, order.debit_account_id, lambda account: account.require_reserve(amount), reserve)
    (await require_account(tx, order.credit_account_id)).require_usable(amount.currency)


async def _resolve_hold(
    tx: Tx, hold_id: str, decide: Callable[[Hold], Any], status: HoldStatus, transfer_id: str | None
) -> tuple[Hold, Any]:
    """Moves a PLACED hold to its final state once; the domain's decision on the hold as it was."""
    for _ in range(DECISIONS):
        hold = await require_hold(tx, hold_id)
        decision = decide(hold)
        captured = decision.minor if isinstance(decision, Money) else None
        resolved = await tx.execute(
            "UPDATE holds SET status = ?, captured_minor = ?, transfer_id = ? WHERE hold_id = ? AND status = ?",
            status.value,
            captured,
            transfer_id,
            hold_id,
            HoldStatus.PLACED.value,
        )
        if resolved == 1:
            return hold, decision
    raise Aborted("CONCURRENT_MOVEMENT", "the hold kept changing; retry with the same request_id", {"hold_id": hold_id})


async def capture_hold(
    tx: Tx, hold_id: str, amount: Money | None, transfer_id: str, key: IdempotencyKey, at: datetime
) -> tuple[Hold, Transfer]:
    async def capture() -> tuple[Hold, Transfer]:
        hold, captured = await _resolve_hold(tx, hold_id, lambda h: h.capture(amount), HoldStatus.CAPTURED, transfer_id)
        order = TransferOrder(hold.debit_account_id, hold.credit_account_id, captured, hold.description, hold_id=hold_id)
        transfer = await post_transfer(tx, order, transfer_id, at, release=hold.amount.minor)
        return await _stored_hold(tx, hold_id), transfer

    async def captured(done_id: str) -> tuple[Hold, Transfer]:
        done = await _stored_hold(tx, done_id)
        return done, await stored_transfer(tx, done.transfer_id)

    return await once(tx, key, hold_id, capture, captured)


async def release_hold(tx: Tx, hold_id: str, key: IdempotencyKey) -> Hold:
    async def release() -> Hold:
        hold, _ = await _resolve_hold(tx, hold_id, Hold.require_placed, HoldStatus.RELEASED, None)
        await tx.execute(
            "UPDATE accounts SET held_minor = held_minor - ? WHERE account_id = ?", hold.amount.minor, hold.debit_account_id
        )
        return await _stored_hold(tx, hold_id)

    return await once(tx, key, hold_id, release, lambda done: _stored_hold(tx, done))
