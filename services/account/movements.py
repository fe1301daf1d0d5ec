"""The ledger's units of work, as the account use cases hold them: lock the rows that move, let
the domain decide on them, save what it decided, in one transaction.

Each function runs inside a unit (`AccountUnits.write`), so a decision is taken on the state it
writes over: the accounts a movement debits and credits are locked in id order first (no two
movements wait on each other in a cycle), a hold or a transfer before it is resolved or reversed.
A write is idempotent by its request id (`uow.once`): a refusal the domain raises stays the key's
answer, and a replay answers what the first request made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime

from common.db.base import Settled
from common.errors import FieldViolation, NotFound, PreconditionFailed, ValidationFailed
from common.idempotency import IdempotencyKey
from common.ids import new_id
from common.money import Money
from kernel.interest import InterestTier
from services.account.bulk_fees import ChunkOverlap, FeeChunk
from services.account.bulk_postings import AccrualChunk, PastLimit
from services.account.domain import (
    Account,
    AccountEvent,
    Charge,
    ChargeOrder,
    Hold,
    HoldStatus,
    Transfer,
    TransferOrder,
    TransferPosted,
    balance_limit,
    fee_chunk_overlap,
    known,
    require_holdable,
    require_posting,
)
from services.account.repository import AccountUnit

# --- transfers --------------------------------------------------------------------------------


async def post(
    uow: AccountUnit,
    order: TransferOrder,
    transfer_id: str,
    at: datetime,
    *,
    release: int = 0,
    locked: dict[str, Account] | None = None,
) -> Transfer:
    """Posts `order` (`release`: what the debited account held for it is freed) on the accounts
    locked for it: both balances, the transfer, its two entries and TransferPosted."""
    sides = sorted({order.debit_account_id, order.credit_account_id})
    accounts = locked if locked is not None else await uow.accounts.locked(sides)
    require_posting(order, accounts, release=release)
    balances = {}
    for account_id in sides:
        if account_id == order.debit_account_id:
            balances[account_id] = await uow.accounts.debit(account_id, order.amount, release=release)
        else:
            balances[account_id] = await uow.accounts.credit(account_id, order.amount)
    transfer = await uow.transfers.add(order, transfer_id, at, balances)
    await uow.publish([TransferPosted(transfer)])
    return transfer


async def transfer(uow: AccountUnit, order: TransferOrder, key: IdempotencyKey, at: datetime) -> Transfer:
    transfer_id = new_id("trf")
    return await uow.once(key, transfer_id, lambda: post(uow, order, transfer_id, at), uow.transfers.stored)


async def reverse(uow: AccountUnit, transfer_id: str, reason: str, key: IdempotencyKey, at: datetime) -> Transfer:
    """The transfer undone once: the same amount back, as a new transfer that names it."""
    reversal_id = new_id("trf")

    async def reversal() -> Transfer:
        original = await uow.transfers.locked(transfer_id)
        if original is None:
            raise NotFound("transfer", transfer_id)
        order = original.reversal(reason)
        await uow.transfers.mark_reversed(transfer_id, reversal_id)
        return await post(uow, order, reversal_id, at)

    return await uow.once(key, reversal_id, reversal, uow.transfers.stored)


# --- accounts ---------------------------------------------------------------------------------


async def open_account(
    uow: AccountUnit, account: Account, key: IdempotencyKey, events: list[AccountEvent], refused: PreconditionFailed | None
) -> Account:
    """Opens `account` once for `key`; `refused` (decided on another context's answer, which this
    unit cannot read) is kept as the key's answer instead."""

    async def make() -> Account:
        if refused is not None:
            raise refused
        await uow.accounts.add(account)
        await uow.publish(events)
        return account

    return await uow.once(key, account.account_id, make, uow.accounts.stored)


async def open_for_event(uow: AccountUnit, account: Account, consumer: str, event_id: str, events: list[AccountEvent]) -> bool:
    """Opens `account` unless `consumer` already handled `event_id`."""
    if not await uow.accounts.add_for_event(account, consumer, event_id):
        return False
    await uow.publish(events)
    return True


async def close_account(
    uow: AccountUnit, account_id: str, key: IdempotencyKey, at: datetime, events: list[AccountEvent]
) -> Account:
    async def close() -> Account:
        known(await uow.accounts.locked([account_id]), account_id).require_closable()
        await uow.accounts.close(account_id, at)
        await uow.publish(events)
        return await uow.accounts.stored(account_id)

    return await uow.once(key, account_id, close, uow.accounts.stored)


# --- holds ------------------------------------------------------------------------------------


async def place_hold(
    uow: AccountUnit, order: TransferOrder, key: IdempotencyKey, at: datetime, owner: str, placed_by: str, *, capture: bool
) -> Hold:
    """Reserves the order's funds; `capture`: posts them at once instead (the hold recorded
    captured), in the same unit."""
    hold_id = new_id("hld")

    async def place() -> Hold:
        if capture:  # both balances move: both locked
            accounts = await uow.accounts.locked([order.debit_account_id, order.credit_account_id])
        else:  # the debtor's alone moves; the account it would go to (often the bank's clearing
            # account, shared by every payment out) is only read, so holds never queue on its row
            payee = await uow.accounts.read([order.credit_account_id])
            accounts = {**payee, **await uow.accounts.locked([order.debit_account_id])}
        hold = Hold(
            hold_id,
            order.debit_account_id,
            order.credit_account_id,
            order.amount,
            HoldStatus.PLACED,
            order.description,
            owner_context=owner,
            placed_by=placed_by,
            placed_at=at,
            remittance=order.remittance,
        )
        if capture:
            posted = await post(uow, replace(order, hold_id=hold_id), new_id("trf"), at, locked=accounts)
            hold = replace(hold, status=HoldStatus.CAPTURED, captured=order.amount, transfer_id=posted.transfer_id)
        else:
            require_holdable(order, accounts)
            await uow.accounts.reserve(order.debit_account_id, order.amount)
        await uow.holds.add(hold)
        return hold

    return await uow.once(key, hold_id, place, uow.holds.stored)


async def place_holds(
    uow: AccountUnit, orders: Sequence[tuple[TransferOrder, IdempotencyKey]], at: datetime, owner: str, placed_by: str
) -> list[Hold]:
    """Reserves every new order's funds together, or none: each debited account is locked and
    judged once for the sum of its new holds (an order whose key an earlier request used answers
    the hold it made, as PlaceHold does). A refusal is kept on every new key, so that no order of
    the set is placed later alone, nor answered otherwise than the set was. A request_id twice
    is refused: each names one hold (checked here, not as a contract rule: CEL's iteration budget
    is below the 10,000 holds a request may carry)."""
    if len({key.request_id for _, key in orders}) != len(orders):
        raise ValidationFailed([FieldViolation("holds", "each hold's request_id appears once in the request")])
    debtors = sorted({order.debit_account_id for order, _ in orders})
    payees = await uow.accounts.read(sorted({order.credit_account_id for order, _ in orders} - set(debtors)))
    accounts = {**payees, **await uow.accounts.locked(debtors)}
    made: list[Hold | None] = []
    new: list[tuple[TransferOrder, IdempotencyKey, Hold]] = []
    for order, key in orders:
        hold = Hold(
            new_id("hld"),
            order.debit_account_id,
            order.credit_account_id,
            order.amount,
            HoldStatus.PLACED,
            order.description,
            owner_context=owner,
            placed_by=placed_by,
            placed_at=at,
            remittance=order.remittance,
        )
        replayed = await uow.claim(key, hold.hold_id, record=False)
        made.append(await uow.holds.stored(replayed) if replayed is not None else None)
        if replayed is None:
            new.append((order, key, hold))
    sums: dict[tuple[str, str], int] = {}
    for order, _, _ in new:
        side = (order.debit_account_id, order.amount.currency)
        sums[side] = sums.get(side, 0) + order.amount.minor
    try:
        for order, _, _ in new:
            known(accounts, order.credit_account_id).require_usable(order.amount.currency)
        for (account_id, currency), total in sorted(sums.items()):
            known(accounts, account_id).require_reserve(Money(currency, total))
    except PreconditionFailed as refused:
        for _, key, _ in new:
            await uow.refuse(key, refused)
        raise Settled(refused) from refused
    for (account_id, currency), total in sorted(sums.items()):
        await uow.accounts.reserve(account_id, Money(currency, total))
    for _, _, hold in new:
        await uow.holds.add(hold)
    await uow.record("PlaceHold", [(hold.hold_id, key.request_id) for _, key, hold in new])
    placed = iter(hold for _, _, hold in new)
    return [hold if hold is not None else next(placed) for hold in made]


async def _locked_hold(uow: AccountUnit, hold_id: str) -> Hold:
    hold = await uow.holds.locked(hold_id)
    if hold is None:
        raise NotFound("hold", hold_id)
    return hold


async def capture_hold(
    uow: AccountUnit, hold_id: str, amount: Money | None, key: IdempotencyKey, at: datetime
) -> tuple[Hold, Transfer]:
    """Posts `amount` of the hold (None: all of it) and frees the rest, once."""
    transfer_id = new_id("trf")

    async def capture() -> tuple[Hold, Transfer]:
        hold = await _locked_hold(uow, hold_id)
        taken = hold.capture(amount)
        captured = replace(hold, status=HoldStatus.CAPTURED, captured=taken, transfer_id=transfer_id)
        await uow.holds.resolve(captured)
        order = TransferOrder(
            hold.debit_account_id, hold.credit_account_id, taken, hold.description, hold_id=hold_id, remittance=hold.remittance
        )
        return captured, await post(uow, order, transfer_id, at, release=hold.amount.minor)

    async def replayed(done_id: str) -> tuple[Hold, Transfer]:
        done = await uow.holds.stored(done_id)
        return done, await uow.transfers.stored(done.transfer_id)

    return await uow.once(key, hold_id, capture, replayed)


async def release_hold(uow: AccountUnit, hold_id: str, key: IdempotencyKey) -> Hold:
    async def release() -> Hold:
        hold = await _locked_hold(uow, hold_id)
        hold.require_placed()
        released = replace(hold, status=HoldStatus.RELEASED)
        await uow.holds.resolve(released)
        await uow.accounts.free(hold.debit_account_id, hold.amount)
        return released

    return await uow.once(key, hold_id, release, uow.holds.stored)


async def lookup_hold(uow: AccountUnit, scope: str, request_id: str) -> Hold | None:
    """The hold `scope`'s PlaceHold with `request_id` placed; None (and the id closed) if none."""
    hold_id = await uow.made_or_closed(scope, request_id, "PlaceHold")
    return await uow.holds.get(hold_id) if hold_id else None


# --- batches ----------------------------------------------------------------------------------


async def accrue_interest(
    uow: AccountUnit,
    key: IdempotencyKey,
    business_date: str,
    currency: str,
    tiers: tuple[InterestTier, ...],
    chunk: tuple[str, int],
    at: datetime,
) -> AccrualChunk:
    """One chunk (`after`, `limit`) of a day's interest. Its request_id is claimed for its range
    in the unit that posts it: sent again with another body it is IDEMPOTENCY_KEY_REUSED; with
    the same body, the chunk answers from its record, as it does for any request."""
    after, limit = chunk
    await uow.claim(key, f"interest/{business_date}/{currency}/{after}", record=False)
    try:
        return await uow.batches.accrue_interest(business_date, currency, tiers, after, limit, at)
    except PastLimit as past:
        raise balance_limit(past.account_id) from past


async def charge_fees(
    uow: AccountUnit, key: IdempotencyKey, first_day: date, currency: str, chunk: tuple[str, int], at: datetime
) -> FeeChunk:
    """As accrue_interest, for a month's fees."""
    after, limit = chunk
    await uow.claim(key, f"fees/{first_day:%Y-%m}/{currency}/{after}", record=False)
    try:
        return await uow.batches.charge_fees(first_day, currency, after, limit, at)
    except PastLimit as past:
        raise balance_limit(past.account_id) from past
    except ChunkOverlap as overlap:
        raise fee_chunk_overlap(overlap.start, overlap.last) from overlap


# --- charges ----------------------------------------------------------------------------------


async def post_charges(uow: AccountUnit, orders: Sequence[tuple[ChargeOrder, IdempotencyKey]], at: datetime) -> list[Charge]:
    """Debits each order's account for its total, then credits the bank's accounts once each for
    all the lines that posted. The debited accounts are locked first, in one id order; the bank's
    accounts only when they are credited, at the end, so the chunk holds their rows as briefly as
    the movements beside it do. A refused order's key keeps its refusal: the order never posts,
    however often it is sent again (a debit refused once and taken by a retry would be money no
    caller recorded)."""
    accounts = await uow.accounts.locked([order.account_id for order, _ in orders])
    answers: dict[str, Charge] = {}
    debited: list[tuple[Charge, int]] = []  # the charge, its account's balance after it
    for order, key in sorted(orders, key=lambda o: (o[0].account_id, o[0].request_id)):
        answer, balance = await _debit(uow, order, key, accounts)
        answers[order.request_id] = answer
        if balance is not None:
            accounts[order.account_id] = replace(accounts[order.account_id], balance=balance)  # the next order decides on it
            debited.append((answer, balance))
    await uow.record("PostCharges", [(charge.charge_id, charge.request_id) for charge, _ in debited])
    by_request = {order.request_id: order for order, _ in orders}
    await _credit_lines(uow, [(by_request[c.request_id], c, balance) for c, balance in debited], accounts, at)
    return [answers[order.request_id] for order, _ in orders]


async def _debit(
    uow: AccountUnit, order: ChargeOrder, key: IdempotencyKey, accounts: dict[str, Account]
) -> tuple[Charge, int | None]:
    """The order's answer, and its account's balance once debited (None: not debited now)."""
    charge_id = new_id("chg")
    try:
        replayed = await uow.claim(key, charge_id, record=False)
    except PreconditionFailed as voided:  # refused before, or closed by its context: it never posts
        return Charge(order.request_id, order.account_id, order.total, rejection_reason=voided.reason), None
    if replayed is not None:
        return await uow.charges.stored(replayed), None
    try:
        known(accounts, order.account_id).require_debit(order.total)
    except PreconditionFailed as rejected:  # the key keeps the refusal: a retry hears it, never posts
        await uow.refuse(key, rejected)
        return Charge(order.request_id, order.account_id, order.total, rejection_reason=rejected.reason), None
    balance = await uow.accounts.debit(order.account_id, order.total)
    posted = Charge(order.request_id, order.account_id, order.total, charge_id, tuple(new_id("trf") for _ in order.lines))
    return posted, balance


async def _credit_lines(
    uow: AccountUnit, debited: Sequence[tuple[ChargeOrder, Charge, int]], accounts: dict[str, Account], at: datetime
) -> None:
    """The bank's side of the posted charges: each internal account credited once with its lines'
    sum, then the transfers (each announced), their entries (each with its running balance) and
    the charges."""
    sums: dict[tuple[str, str], int] = {}
    for order, _, _ in debited:
        for internal, amount in order.lines:
            side = (internal.account_id(amount.currency), amount.currency)
            sums[side] = sums.get(side, 0) + amount.minor
    accounts = {**accounts, **await uow.accounts.locked([account_id for account_id, _ in sums])}
    running: dict[str, int] = {}
    for (account_id, currency), total in sorted(sums.items()):
        known(accounts, account_id).require_credit(Money(currency, total))
        running[account_id] = await uow.accounts.credit(account_id, Money(currency, total)) - total
    transfers: list[tuple[Transfer, int, int]] = []  # each with both balances after it
    actor = uow.transfers.actor()
    for order, charge, balance in debited:
        customer = balance + order.total.minor
        for (internal, amount), transfer_id in zip(order.lines, charge.transfer_ids, strict=True):
            account_id = internal.account_id(amount.currency)
            customer -= amount.minor
            running[account_id] += amount.minor
            transfer = Transfer(transfer_id, order.account_id, account_id, amount, order.description, at, actor=actor)
            transfers.append((transfer, customer, running[account_id]))
    await uow.transfers.add_many(transfers)
    await uow.publish([TransferPosted(t) for t, _, _ in transfers])
    await uow.charges.add_many([charge for _, charge, _ in debited], at)


async def lookup_charge(uow: AccountUnit, scope: str, request_id: str) -> Charge | None:
    """The charge `scope`'s order with `request_id` posted; None (and the id closed) if none."""
    charge_id = await uow.made_or_closed(scope, request_id, "PostCharges")
    return await uow.charges.stored(charge_id) if charge_id else None
