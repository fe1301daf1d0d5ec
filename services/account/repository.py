"""The ledger in SQL, written once for SQLite and PostgreSQL.

Every movement is one unit of work: the idempotency key, both balance updates, the transfer, its
two entries and its event commit together or not at all. The domain decides, on the rows read
here (Account, Hold, Transfer); every UPDATE keeps a condition that guards that decision against
a change committed in between, and a guard that trips makes the domain decide again on the row
as it now is. Accounts are updated in id order so that concurrent transfers on PostgreSQL cannot
deadlock each other. The set-based postings (interest, fees) are in bulk_postings.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import date, datetime
from typing import Any, Protocol

from common.audit import acting, record_change, record_changes
from common.db.base import Row, Tx, aggregate, stored
from common.db.databases import ContextDatabase
from common.db.idempotency import claim, once, refuse, resource_or_void
from common.db.keyset import Page, keyset_page
from common.di import BaseComponent, og_component
from common.errors import Aborted, NotFound, PreconditionFailed
from common.events.inbox import first_delivery
from common.idempotency import IdempotencyKey
from common.ids import new_id
from common.money import MAX_MINOR, Money
from kernel.interest import InterestTier
from services.account import bulk_postings
from services.account.adapters import OUTGOING
from services.account.bulk_postings import AccrualChunk, FeeChunk
from services.account.domain import (
    Account,
    AccountEvent,
    AccountFeatures,
    AccountStatus,
    AccountType,
    Charge,
    ChargeOrder,
    Entry,
    Hold,
    HoldStatus,
    InternalAccount,
    Transfer,
    TransferOrder,
    TransferPosted,
    floor_of,
)
from services.account.tables import (
    ACCOUNT_COLUMNS,
    ENTRY_COLUMNS,
    HOLD_COLUMNS,
    TRANSFER_COLUMNS,
    TRANSFER_READ_COLUMNS,
    account_of,
    features_json,
    hold_of,
    transfer_of,
)

_DECISIONS = 3  # a guard that trips this often is a row under a storm of writes: the caller retries


class LedgerRepository(Protocol):
    async def open_account(
        self, account: Account, key: IdempotencyKey, events: list[AccountEvent], refused: PreconditionFailed | None = None
    ) -> Account:
        """Opens `account` once for `key`; `refused` (decided by another context, which this unit
        cannot read) is kept as the key's answer instead."""

    async def open_account_once(self, account: Account, consumer: str, event_id: str, events: list[AccountEvent]) -> bool:
        """Opens `account` unless `consumer` already handled `event_id` (the inbox)."""

    async def ensure_internal_accounts(self, currencies: list[str], at: datetime) -> None: ...

    async def get_account(self, account_id: str) -> Account | None: ...

    async def accounts_of(self, customer_id: str, after: int, limit: int) -> Page[Account, int]: ...

    async def close_account(self, account_id: str, key: IdempotencyKey, at: datetime, events: list[AccountEvent]) -> Account: ...

    async def transfer(self, order: TransferOrder, transfer_id: str, key: IdempotencyKey, at: datetime) -> Transfer: ...

    async def get_transfer(self, transfer_id: str) -> Transfer | None: ...

    async def reverse(self, transfer_id: str, reason: str, new_id: str, key: IdempotencyKey, at: datetime) -> Transfer: ...

    async def place_hold(
        self,
        order: TransferOrder,
        hold_id: str,
        key: IdempotencyKey,
        at: datetime,
        owner: str,
        placed_by: str,
        capture_as: str | None = None,
    ) -> Hold:
        """Reserves the order's funds; with `capture_as`, posts them too as that transfer."""

    async def lookup_hold(self, scope: str, request_id: str) -> Hold | None:
        """The hold `scope`'s PlaceHold with `request_id` placed; None (and the id closed) if none."""

    async def holds_of(self, account_id: str, after: int, limit: int) -> Page[Hold, int]: ...

    async def capture_hold(
        self, hold_id: str, amount: Money | None, transfer_id: str, key: IdempotencyKey, at: datetime
    ) -> tuple[Hold, Transfer]: ...

    async def release_hold(self, hold_id: str, key: IdempotencyKey) -> Hold: ...

    async def entries(self, account_id: str, after: int, limit: int) -> Page[Entry, int]: ...

    async def get_hold(self, hold_id: str) -> Hold | None: ...

    async def accrue_interest(
        self, business_date: str, currency: str, tiers: tuple[InterestTier, ...], after: str, limit: int, at: datetime
    ) -> AccrualChunk: ...

    async def charge_fees(self, first_day: date, currency: str, after: str, limit: int, at: datetime) -> FeeChunk: ...

    async def post_charges(self, orders: list[tuple[ChargeOrder, IdempotencyKey, str]], at: datetime) -> list[Charge]:
        """Each (order, its key, the id it gets if posted): posted whole or rejected, in order."""

    async def lookup_charge(self, scope: str, request_id: str) -> Charge | None:
        """The charge `scope`'s order with `request_id` posted; None (and the id closed) if none."""

    async def totals(self) -> tuple[int, int, int]:
        """(sum of debits, sum of credits, sum of balances) over the whole ledger."""


# --- reads ----------------------------------------------------------------------------------


async def _select_account(tx: Tx, account_id: str) -> Account | None:
    row = await tx.fetchone(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ?", account_id)
    return account_of(row) if row else None


async def _select_accounts(tx: Tx, account_ids: list[str]) -> dict[str, Account]:
    rows = await tx.fetchall(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id IN ({', '.join('?' for _ in account_ids)})", *account_ids
    )
    return {row["account_id"]: account_of(row) for row in rows}


async def _require_account(tx: Tx, account_id: str) -> Account:
    account = await _select_account(tx, account_id)
    if account is None:
        raise NotFound("account", account_id)
    return account


async def _select_transfer(tx: Tx, transfer_id: str) -> Transfer | None:
    row = await tx.fetchone(f"SELECT {TRANSFER_READ_COLUMNS} FROM transfers WHERE transfer_id = ?", transfer_id)
    return transfer_of(row) if row else None


async def _select_hold(tx: Tx, hold_id: str) -> Hold | None:
    row = await tx.fetchone(f"SELECT {HOLD_COLUMNS} FROM holds WHERE hold_id = ?", hold_id)
    return hold_of(row) if row else None


async def _require_hold(tx: Tx, hold_id: str) -> Hold:
    hold = await _select_hold(tx, hold_id)
    if hold is None:
        raise NotFound("hold", hold_id)
    return hold


async def _accounts_of(tx: Tx, customer_id: str, after: int, limit: int) -> Page[Account, int]:
    select = f"SELECT seq, {ACCOUNT_COLUMNS} FROM accounts"
    return await keyset_page(tx, select, "customer_id = ?", [customer_id], after, limit, account_of)


async def _holds_of(tx: Tx, account_id: str, after: int, limit: int) -> Page[Hold, int]:
    return await keyset_page(
        tx, f"SELECT seq, {HOLD_COLUMNS} FROM holds", "debit_account_id = ?", [account_id], after, limit, hold_of
    )


async def _lookup_hold(tx: Tx, scope: str, request_id: str) -> Hold | None:
    hold_id = await resource_or_void(tx, scope, request_id, "PlaceHold")
    return await _select_hold(tx, hold_id) if hold_id else None


def _entry(row: Row) -> Entry:
    return Entry(
        transfer_id=row["transfer_id"],
        amount=Money(row["currency"], row["amount_minor"]),
        balance_after=Money(row["currency"], row["balance_after_minor"]),
        counterparty_account_id=row["counterparty_account_id"],
        description=row["description"],
        posted_at=datetime.fromisoformat(row["posted_at"]),
    )


async def _entries(tx: Tx, account_id: str, after: int, limit: int) -> Page[Entry, int]:
    select = (
        "SELECT e.seq AS seq, e.transfer_id, e.amount_minor, e.balance_after_minor, e.counterparty_account_id,"
        " e.description, e.posted_at, a.currency FROM entries e JOIN accounts a ON a.account_id = e.account_id"
    )
    return await keyset_page(tx, select, "e.account_id = ?", [account_id], after, limit, _entry, key="e.seq")


async def _totals(tx: Tx) -> tuple[int, int, int]:
    row = await aggregate(
        tx,
        "SELECT COALESCE(SUM(CASE WHEN amount_minor < 0 THEN -amount_minor ELSE 0 END), 0) AS debits,"
        " COALESCE(SUM(CASE WHEN amount_minor > 0 THEN amount_minor ELSE 0 END), 0) AS credits FROM entries",
    )
    balances = await aggregate(tx, "SELECT COALESCE(SUM(balance_minor), 0) AS total FROM accounts")
    return int(row["debits"]), int(row["credits"]), int(balances["total"])


# --- decisions, guarded -----------------------------------------------------------------------


async def _decided(
    tx: Tx,
    account_id: str,
    decide: Callable[[Account], None],
    write: Callable[[], Awaitable[Row | None]],
    read: Account | None = None,
) -> Row:
    """The domain decides on the account as it is (`read`: as it was just read), then `write`
    applies the decision under its guard; a guard that finds the row changed since makes the
    domain decide again on the new row."""
    for _ in range(_DECISIONS):
        decide(read or await _require_account(tx, account_id))
        read = None
        row = await write()
        if row is not None:
            return row
    raise Aborted(
        "CONCURRENT_MOVEMENT", f"account {account_id} kept changing; retry with the same request_id", {"account_id": account_id}
    )


# --- accounts -------------------------------------------------------------------------------


async def _insert_account(tx: Tx, account: Account) -> None:
    await tx.execute(
        f"INSERT INTO accounts ({ACCOUNT_COLUMNS}, interest_bearing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        account.account_id,
        account.customer_id,
        account.type.value,
        account.status.value,
        account.currency,
        features_json(account.features),
        account.balance,
        account.held,
        floor_of(account.type, account.features),
        account.opened_at.isoformat(),
        int(account.features.interest_bearing),
    )


async def _open_account(
    tx: Tx, account: Account, key: IdempotencyKey, events: list[AccountEvent], refused: PreconditionFailed | None
) -> Account:
    async def make() -> Account:
        if refused is not None:
            raise refused
        await _insert_account(tx, account)
        await OUTGOING.append(tx, events)
        return account

    return await once(tx, key, account.account_id, make, lambda replayed: _require_account(tx, replayed))


async def _open_account_once(tx: Tx, account: Account, consumer: str, event_id: str, events: list[AccountEvent]) -> bool:
    if not await first_delivery(tx, consumer, event_id):
        return False
    await _insert_account(tx, account)
    await OUTGOING.append(tx, events)
    await record_change(tx, "OpenDefaultAccount", account.account_id, event_id)
    return True


async def _ensure_internal(tx: Tx, currencies: list[str], at: datetime) -> None:
    for currency in currencies:
        for internal in InternalAccount:
            await tx.execute(
                f"INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?, '', ?, ?, ?, ?, 0, 0, NULL, ?)"
                " ON CONFLICT (account_id) DO NOTHING",
                internal.account_id(currency),
                AccountType.INTERNAL.value,
                AccountStatus.OPEN.value,
                currency,
                features_json(AccountFeatures()),
                at.isoformat(),
            )


async def _close_account(tx: Tx, account_id: str, key: IdempotencyKey, at: datetime, events: list[AccountEvent]) -> Account:
    return await once(tx, key, account_id, lambda: _close(tx, account_id, at, events), lambda done: _require_account(tx, done))


async def _close(tx: Tx, account_id: str, at: datetime, events: list[AccountEvent]) -> Account:
    async def close() -> Row | None:
        return await tx.fetchone(
            "UPDATE accounts SET status = ?, closed_at = ? WHERE account_id = ? AND status = ?"
            " AND balance_minor = 0 AND held_minor = 0 RETURNING account_id",
            AccountStatus.CLOSED.value,
            at.isoformat(),
            account_id,
            AccountStatus.OPEN.value,
        )

    await _decided(tx, account_id, Account.require_closable, close)
    await OUTGOING.append(tx, events)
    return await _require_account(tx, account_id)


# --- movements ------------------------------------------------------------------------------


async def _debit(tx: Tx, account_id: str, amount: Money, *, release: int = 0, read: Account | None = None) -> int:
    """Debits (after releasing `release` from what it holds); the new balance."""

    async def debit() -> Row | None:
        return await tx.fetchone(
            "UPDATE accounts SET balance_minor = balance_minor - ?, held_minor = held_minor - ?"
            " WHERE account_id = ? AND status = 'OPEN' AND currency = ? AND balance_minor - ? >= ?"
            " AND (floor_minor IS NULL OR balance_minor - (held_minor - ?) - ? >= floor_minor)"
            " RETURNING balance_minor",
            amount.minor,
            release,
            account_id,
            amount.currency,
            amount.minor,
            -MAX_MINOR,
            release,
            amount.minor,
        )

    row = await _decided(tx, account_id, lambda account: account.require_debit(amount, release=release), debit, read)
    return int(row["balance_minor"])


async def _credit(tx: Tx, account_id: str, amount: Money, *, read: Account | None = None) -> int:
    """Credits; the new balance."""

    async def credit() -> Row | None:
        return await tx.fetchone(
            "UPDATE accounts SET balance_minor = balance_minor + ? WHERE account_id = ? AND status = 'OPEN'"
            " AND currency = ? AND balance_minor + ? <= ? RETURNING balance_minor",
            amount.minor,
            account_id,
            amount.currency,
            amount.minor,
            MAX_MINOR,
        )

    row = await _decided(tx, account_id, lambda account: account.require_credit(amount), credit, read)
    return int(row["balance_minor"])


async def _post(tx: Tx, order: TransferOrder, transfer_id: str, at: datetime, *, release: int = 0) -> Transfer:
    """Posts a transfer: both balances, the transfer, two entries, the event. No idempotency here."""
    balances: dict[str, int] = {}
    sides = sorted((order.debit_account_id, order.credit_account_id))  # one lock order: no deadlock
    accounts = await _select_accounts(tx, sides)  # both in one read
    for account_id in sides:
        read = accounts.get(account_id)
        if read is None:
            raise NotFound("account", account_id)
        if account_id == order.debit_account_id:
            balances[account_id] = await _debit(tx, account_id, order.amount, release=release, read=read)
        else:
            balances[account_id] = await _credit(tx, account_id, order.amount, read=read)
    transfer = Transfer(
        transfer_id,
        order.debit_account_id,
        order.credit_account_id,
        order.amount,
        order.description,
        at,
        order.reverses_transfer_id,
        order.hold_id,
        actor=acting(tx.context),
    )
    await _insert_transfer(tx, transfer, balances)
    await OUTGOING.append(tx, [TransferPosted(transfer)])
    return transfer


def _transfer_row(t: Transfer) -> tuple[object, ...]:
    return (
        t.transfer_id,
        t.debit_account_id,
        t.credit_account_id,
        t.amount.minor,
        t.amount.currency,
        t.description,
        t.reverses_transfer_id or None,
        t.hold_id or None,
        t.posted_at.isoformat(),
        t.actor,
    )


def _entry_rows(t: Transfer, debit_after: int, credit_after: int) -> list[tuple[object, ...]]:
    """The transfer's two entries, each with its account's balance after it."""
    posted, debit, credit = t.posted_at.isoformat(), t.debit_account_id, t.credit_account_id
    return [
        (debit, t.transfer_id, -t.amount.minor, debit_after, credit, t.description, posted),
        (credit, t.transfer_id, t.amount.minor, credit_after, debit, t.description, posted),
    ]


_INSERT_TRANSFER = f"INSERT INTO transfers ({TRANSFER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_ENTRY = f"INSERT INTO entries ({ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"


async def _insert_transfer(tx: Tx, t: Transfer, balances: dict[str, int]) -> None:
    """The transfer and its two entries (each with the balance after it)."""
    await tx.execute(_INSERT_TRANSFER, *_transfer_row(t))
    await tx.executemany(_INSERT_ENTRY, _entry_rows(t, balances[t.debit_account_id], balances[t.credit_account_id]))


async def _stored_transfer(tx: Tx, transfer_id: str) -> Transfer:
    return stored(await _select_transfer(tx, transfer_id), transfer_id)


async def _transfer(tx: Tx, order: TransferOrder, transfer_id: str, key: IdempotencyKey, at: datetime) -> Transfer:
    return await once(tx, key, transfer_id, lambda: _post(tx, order, transfer_id, at), lambda done: _stored_transfer(tx, done))


async def _reverse(tx: Tx, transfer_id: str, reason: str, new_id: str, key: IdempotencyKey, at: datetime) -> Transfer:
    def reversal() -> Awaitable[Transfer]:
        return _reversal(tx, transfer_id, reason, new_id, at)

    return await once(tx, key, new_id, reversal, lambda done: _stored_transfer(tx, done))


async def _reversal(tx: Tx, transfer_id: str, reason: str, new_id: str, at: datetime) -> Transfer:
    for _ in range(_DECISIONS):
        original = await _select_transfer(tx, transfer_id)
        if original is None:
            raise NotFound("transfer", transfer_id)
        order = original.reversal(reason)
        claimed = await tx.execute(
            "UPDATE transfers SET reversed_by = ? WHERE transfer_id = ? AND reversed_by IS NULL", new_id, transfer_id
        )
        if claimed == 1:
            return await _post(tx, order, new_id, at)
    raise Aborted(
        "CONCURRENT_MOVEMENT", "the transfer kept changing; retry with the same request_id", {"transfer_id": transfer_id}
    )


# --- charges --------------------------------------------------------------------------------


async def _select_charge(tx: Tx, charge_id: str) -> Charge:
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


async def _lookup_charge(tx: Tx, scope: str, request_id: str) -> Charge | None:
    charge_id = await resource_or_void(tx, scope, request_id, "PostCharges")
    return await _select_charge(tx, charge_id) if charge_id else None


async def _post_charges(tx: Tx, orders: list[tuple[ChargeOrder, IdempotencyKey, str]], at: datetime) -> list[Charge]:
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
            answers[order.request_id] = await _select_charge(tx, replayed)
            continue
        try:
            balance = await _debit(tx, order.account_id, order.total)
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
        account_id: await _credit(tx, account_id, Money(currency, total)) - total
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
            entries += _entry_rows(transfer, customer, running[account_id])
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
    await tx.executemany(_INSERT_TRANSFER, [_transfer_row(t) for t in transfers])
    await tx.executemany(_INSERT_ENTRY, entries)
    await OUTGOING.append(tx, [TransferPosted(t) for t in transfers])
    await tx.executemany(
        "INSERT INTO charges (charge_id, request_id, account_id, total_minor, currency, transfer_ids, posted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        charges,
    )


# --- holds ----------------------------------------------------------------------------------


async def _place_hold(
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
    return stored(await _select_hold(tx, hold_id), hold_id)


async def _place(
    tx: Tx, order: TransferOrder, hold_id: str, at: datetime, owner: str, placed_by: str, capture_as: str | None
) -> Hold:
    if capture_as is None:
        await _reserve(tx, order)
        status, captured = HoldStatus.PLACED, None
    else:  # posted as a transfer is: both accounts locked in one order, so no deadlock
        await _post(tx, replace(order, hold_id=hold_id), capture_as, at)
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

    await _decided(tx, order.debit_account_id, lambda account: account.require_reserve(amount), reserve)
    (await _require_account(tx, order.credit_account_id)).require_usable(amount.currency)


async def _resolve_hold(
    tx: Tx, hold_id: str, decide: Callable[[Hold], Any], status: HoldStatus, transfer_id: str | None
) -> tuple[Hold, Any]:
    """Moves a PLACED hold to its final state once; the domain's decision on the hold as it was."""
    for _ in range(_DECISIONS):
        hold = await _require_hold(tx, hold_id)
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


async def _capture_hold(
    tx: Tx, hold_id: str, amount: Money | None, transfer_id: str, key: IdempotencyKey, at: datetime
) -> tuple[Hold, Transfer]:
    async def capture() -> tuple[Hold, Transfer]:
        hold, captured = await _resolve_hold(tx, hold_id, lambda h: h.capture(amount), HoldStatus.CAPTURED, transfer_id)
        order = TransferOrder(hold.debit_account_id, hold.credit_account_id, captured, hold.description, hold_id=hold_id)
        transfer = await _post(tx, order, transfer_id, at, release=hold.amount.minor)
        return await _stored_hold(tx, hold_id), transfer

    async def captured(done_id: str) -> tuple[Hold, Transfer]:
        done = await _stored_hold(tx, done_id)
        return done, await _stored_transfer(tx, done.transfer_id)

    return await once(tx, key, hold_id, capture, captured)


async def _release_hold(tx: Tx, hold_id: str, key: IdempotencyKey) -> Hold:
    async def release() -> Hold:
        hold, _ = await _resolve_hold(tx, hold_id, Hold.require_placed, HoldStatus.RELEASED, None)
        await tx.execute(
            "UPDATE accounts SET held_minor = held_minor - ? WHERE account_id = ?", hold.amount.minor, hold.debit_account_id
        )
        return await _stored_hold(tx, hold_id)

    return await once(tx, key, hold_id, release, lambda done: _stored_hold(tx, done))


@og_component()
class SqlLedgerRepository(BaseComponent, LedgerRepository):
    """The ledger in the context's own database (SQLite file or PostgreSQL schema)."""

    def __init__(self, db: ContextDatabase) -> None:
        self._db = db

    async def open_account(
        self, account: Account, key: IdempotencyKey, events: list[AccountEvent], refused: PreconditionFailed | None = None
    ) -> Account:
        return await self._db.write(_open_account, account, key, events, refused)

    async def open_account_once(self, account: Account, consumer: str, event_id: str, events: list[AccountEvent]) -> bool:
        return await self._db.write(_open_account_once, account, consumer, event_id, events)

    async def ensure_internal_accounts(self, currencies: list[str], at: datetime) -> None:
        await self._db.write(_ensure_internal, currencies, at)

    async def get_account(self, account_id: str) -> Account | None:
        return await self._db.read(_select_account, account_id)

    async def accounts_of(self, customer_id: str, after: int, limit: int) -> Page[Account, int]:
        return await self._db.read(_accounts_of, customer_id, after, limit)

    async def close_account(self, account_id: str, key: IdempotencyKey, at: datetime, events: list[AccountEvent]) -> Account:
        return await self._db.write(_close_account, account_id, key, at, events)

    async def transfer(self, order: TransferOrder, transfer_id: str, key: IdempotencyKey, at: datetime) -> Transfer:
        return await self._db.write(_transfer, order, transfer_id, key, at)

    async def get_transfer(self, transfer_id: str) -> Transfer | None:
        return await self._db.read(_select_transfer, transfer_id)

    async def reverse(self, transfer_id: str, reason: str, new_id: str, key: IdempotencyKey, at: datetime) -> Transfer:
        return await self._db.write(_reverse, transfer_id, reason, new_id, key, at)

    async def place_hold(
        self,
        order: TransferOrder,
        hold_id: str,
        key: IdempotencyKey,
        at: datetime,
        owner: str,
        placed_by: str,
        capture_as: str | None = None,
    ) -> Hold:
        return await self._db.write(_place_hold, order, hold_id, key, at, owner, placed_by, capture_as)

    async def lookup_hold(self, scope: str, request_id: str) -> Hold | None:
        return await self._db.write(_lookup_hold, scope, request_id)

    async def holds_of(self, account_id: str, after: int, limit: int) -> Page[Hold, int]:
        return await self._db.read(_holds_of, account_id, after, limit)

    async def capture_hold(
        self, hold_id: str, amount: Money | None, transfer_id: str, key: IdempotencyKey, at: datetime
    ) -> tuple[Hold, Transfer]:
        return await self._db.write(_capture_hold, hold_id, amount, transfer_id, key, at)

    async def release_hold(self, hold_id: str, key: IdempotencyKey) -> Hold:
        return await self._db.write(_release_hold, hold_id, key)

    async def entries(self, account_id: str, after: int, limit: int) -> Page[Entry, int]:
        return await self._db.read(_entries, account_id, after, limit)

    async def totals(self) -> tuple[int, int, int]:
        return await self._db.read(_totals)

    async def post_charges(self, orders: list[tuple[ChargeOrder, IdempotencyKey, str]], at: datetime) -> list[Charge]:
        return await self._db.write(_post_charges, orders, at)

    async def lookup_charge(self, scope: str, request_id: str) -> Charge | None:
        return await self._db.write(_lookup_charge, scope, request_id)

    async def get_hold(self, hold_id: str) -> Hold | None:
        return await self._db.read(_select_hold, hold_id)

    async def accrue_interest(
        self, business_date: str, currency: str, tiers: tuple[InterestTier, ...], after: str, limit: int, at: datetime
    ) -> AccrualChunk:
        return await self._db.write(bulk_postings.accrue_interest, business_date, currency, tiers, after, limit, at)

    async def charge_fees(self, first_day: date, currency: str, after: str, limit: int, at: datetime) -> FeeChunk:
        return await self._db.write(bulk_postings.charge_fees, first_day, currency, after, limit, at)
