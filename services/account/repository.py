"""The ledger in SQL, written once for SQLite and PostgreSQL.

Every movement is one unit of work: the idempotency key, both balance updates (each a conditional
UPDATE that refuses to cross the account's floor), the transfer, its two entries and its event
commit together or not at all. Accounts are updated in id order so concurrent transfers on
PostgreSQL cannot deadlock each other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from google.protobuf.message import Message

from common.db.base import Row, Tx, aggregate, stored
from common.db.databases import ContextDatabase
from common.db.idempotency import claim, resource_or_void
from common.di import BaseComponent, og_component
from common.errors import Aborted, NotFound, PreconditionFailed
from common.events.inbox import first_delivery
from common.events.outbox import append_event
from common.grpc.convert import timestamp
from common.idempotency import IdempotencyKey
from common.money import MAX_MINOR, Money
from ogpgy.account.v1 import events_pb2
from ogpgy.type.v1 import money_pb2
from services.account.domain import (
    Account,
    AccountFeatures,
    AccountStatus,
    AccountType,
    Entry,
    Hold,
    HoldStatus,
    InterestTier,
    InternalAccount,
    Transfer,
    TransferOrder,
    floor_of,
)


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_after: int | None


class LedgerRepository(Protocol):
    async def open_account(self, account: Account, key: IdempotencyKey, events: list[Message]) -> Account: ...

    async def open_account_once(self, account: Account, consumer: str, event_id: str, events: list[Message]) -> bool:
        """Opens `account` unless `consumer` already handled `event_id` (the inbox)."""

    async def ensure_internal_accounts(self, currencies: list[str], at: datetime) -> None: ...

    async def get_account(self, account_id: str) -> Account | None: ...

    async def accounts_of(self, customer_id: str, after: int, limit: int) -> Page: ...

    async def close_account(self, account_id: str, key: IdempotencyKey, at: datetime, events: list[Message]) -> Account: ...

    async def transfer(self, order: TransferOrder, transfer_id: str, key: IdempotencyKey, at: datetime) -> Transfer: ...

    async def get_transfer(self, transfer_id: str) -> Transfer | None: ...

    async def reverse(self, transfer_id: str, reason: str, new_id: str, key: IdempotencyKey, at: datetime) -> Transfer: ...

    async def place_hold(
        self, order: TransferOrder, hold_id: str, key: IdempotencyKey, at: datetime, owner: str, placed_by: str
    ) -> Hold: ...

    async def lookup_hold(self, scope: str, request_id: str) -> Hold | None:
        """The hold `scope`'s PlaceHold with `request_id` placed; None (and the id closed) if none."""

    async def holds_of(self, account_id: str, after: int, limit: int) -> Page: ...

    async def capture_hold(
        self, hold_id: str, amount: Money | None, transfer_id: str, key: IdempotencyKey, at: datetime
    ) -> tuple[Hold, Transfer]: ...

    async def release_hold(self, hold_id: str, key: IdempotencyKey) -> Hold: ...

    async def entries(self, account_id: str, after: int, limit: int) -> Page: ...

    async def get_hold(self, hold_id: str) -> Hold | None: ...

    async def accrue_interest(
        self, business_date: str, currency: str, tiers: tuple[InterestTier, ...], after: str, limit: int, at: datetime
    ) -> AccrualChunk: ...

    async def charge_fees(self, first_day: date, currency: str, after: str, limit: int, at: datetime) -> FeeChunk: ...

    async def totals(self) -> tuple[int, int, int]:
        """(sum of debits, sum of credits, sum of balances) over the whole ledger."""


# --- rows <-> domain ------------------------------------------------------------------------

_ACCOUNT_COLUMNS = (
    "account_id, customer_id, type, status, currency, features_json, balance_minor, held_minor, floor_minor, opened_at"
)
_TRANSFER_COLUMNS = (
    "transfer_id, debit_account_id, credit_account_id, amount_minor, currency, description,"
    " reverses_transfer_id, hold_id, posted_at"
)
_HOLD_COLUMNS = (
    "hold_id, debit_account_id, credit_account_id, amount_minor, currency, status, description, captured_minor, transfer_id,"
    " owner_context, placed_by, placed_at"
)


def _features_json(features: AccountFeatures) -> str:
    data = asdict(features)
    data["annual_interest_rate"] = str(features.annual_interest_rate)
    return json.dumps(data, sort_keys=True)


def _features(text: str) -> AccountFeatures:
    data = json.loads(text)
    data["annual_interest_rate"] = Decimal(data["annual_interest_rate"])
    return AccountFeatures(**data)


def _account(row: Row) -> Account:
    return Account(
        account_id=row["account_id"],
        customer_id=row["customer_id"],
        type=AccountType(row["type"]),
        status=AccountStatus(row["status"]),
        currency=row["currency"],
        features=_features(row["features_json"]),
        balance=row["balance_minor"],
        held=row["held_minor"],
        opened_at=datetime.fromisoformat(row["opened_at"]),
    )


def _transfer_row(row: Row) -> Transfer:
    return Transfer(
        transfer_id=row["transfer_id"],
        debit_account_id=row["debit_account_id"],
        credit_account_id=row["credit_account_id"],
        amount=Money(row["currency"], row["amount_minor"]),
        description=row["description"],
        posted_at=datetime.fromisoformat(row["posted_at"]),
        reverses_transfer_id=row["reverses_transfer_id"] or "",
        hold_id=row["hold_id"] or "",
    )


def _hold(row: Row) -> Hold:
    captured = row["captured_minor"]
    return Hold(
        hold_id=row["hold_id"],
        debit_account_id=row["debit_account_id"],
        credit_account_id=row["credit_account_id"],
        amount=Money(row["currency"], row["amount_minor"]),
        status=HoldStatus(row["status"]),
        description=row["description"],
        captured=Money(row["currency"], captured) if captured is not None else None,
        transfer_id=row["transfer_id"] or "",
        owner_context=row["owner_context"],
        placed_by=row["placed_by"],
        placed_at=datetime.fromisoformat(row["placed_at"]),
    )


def _transfer_posted(t: Transfer) -> events_pb2.TransferPosted:
    return events_pb2.TransferPosted(
        transfer_id=t.transfer_id,
        debit_account_id=t.debit_account_id,
        credit_account_id=t.credit_account_id,
        amount=money_pb2.Money(currency_code=t.amount.currency, amount=t.amount.amount),
        reverses_transfer_id=t.reverses_transfer_id,
        post_time=timestamp(t.posted_at),
    )


# --- reads ----------------------------------------------------------------------------------


async def _select_account(tx: Tx, account_id: str) -> Account | None:
    row = await tx.fetchone(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ?", account_id)
    return _account(row) if row else None


async def _require_account(tx: Tx, account_id: str) -> Account:
    account = await _select_account(tx, account_id)
    if account is None:
        raise NotFound("account", account_id)
    return account


async def _select_transfer(tx: Tx, transfer_id: str) -> Transfer | None:
    row = await tx.fetchone(f"SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE transfer_id = ?", transfer_id)
    return _transfer_row(row) if row else None


async def _select_hold(tx: Tx, hold_id: str) -> Hold | None:
    row = await tx.fetchone(f"SELECT {_HOLD_COLUMNS} FROM holds WHERE hold_id = ?", hold_id)
    return _hold(row) if row else None


async def _rows_after(tx: Tx, table: str, columns: str, column: str, value: str, after: int, limit: int) -> list[Row]:
    """Keyset page: the rows of `table` whose `column` is `value`, after seq `after` (one extra,
    which tells whether there is a next page)."""
    return await tx.fetchall(
        f"SELECT seq, {columns} FROM {table} WHERE {column} = ? AND seq > ? ORDER BY seq LIMIT ?", value, after, limit + 1
    )


async def _accounts_of(tx: Tx, customer_id: str, after: int, limit: int) -> Page:
    return _page(await _rows_after(tx, "accounts", _ACCOUNT_COLUMNS, "customer_id", customer_id, after, limit), limit, _account)


async def _holds_of(tx: Tx, account_id: str, after: int, limit: int) -> Page:
    return _page(await _rows_after(tx, "holds", _HOLD_COLUMNS, "debit_account_id", account_id, after, limit), limit, _hold)


async def _lookup_hold(tx: Tx, scope: str, request_id: str) -> Hold | None:
    hold_id = await resource_or_void(tx, scope, request_id, "PlaceHold")
    return await _select_hold(tx, hold_id) if hold_id else None


async def _entries(tx: Tx, account_id: str, after: int, limit: int) -> Page:
    rows = await tx.fetchall(
        "SELECT e.seq, e.transfer_id, e.amount_minor, e.balance_after_minor, e.counterparty_account_id,"
        " e.description, e.posted_at, a.currency FROM entries e JOIN accounts a ON a.account_id = e.account_id"
        " WHERE e.account_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?",
        account_id,
        after,
        limit + 1,
    )
    return _page(
        rows,
        limit,
        lambda r: Entry(
            transfer_id=r["transfer_id"],
            amount=Money(r["currency"], r["amount_minor"]),
            balance_after=Money(r["currency"], r["balance_after_minor"]),
            counterparty_account_id=r["counterparty_account_id"],
            description=r["description"],
            posted_at=datetime.fromisoformat(r["posted_at"]),
        ),
    )


def _page(rows: list[Row], limit: int, convert: Callable[[Row], Any]) -> Page:
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([convert(r) for r in rows], rows[-1]["seq"] if more else None)


async def _totals(tx: Tx) -> tuple[int, int, int]:
    row = await aggregate(
        tx,
        "SELECT COALESCE(SUM(CASE WHEN amount_minor < 0 THEN -amount_minor ELSE 0 END), 0) AS debits,"
        " COALESCE(SUM(CASE WHEN amount_minor > 0 THEN amount_minor ELSE 0 END), 0) AS credits FROM entries",
    )
    balances = await aggregate(tx, "SELECT COALESCE(SUM(balance_minor), 0) AS total FROM accounts")
    return int(row["debits"]), int(row["credits"]), int(balances["total"])


# --- accounts -------------------------------------------------------------------------------


async def _insert_account(tx: Tx, account: Account) -> None:
    await tx.execute(
        f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}, interest_bearing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        account.account_id,
        account.customer_id,
        account.type.value,
        account.status.value,
        account.currency,
        _features_json(account.features),
        account.balance,
        account.held,
        floor_of(account.type, account.features),
        account.opened_at.isoformat(),
        int(account.features.interest_bearing),
    )


async def _open_account(tx: Tx, account: Account, key: IdempotencyKey, events: list[Message]) -> Account:
    replayed = await claim(tx, key, account.account_id)
    if replayed is not None:
        return await _require_account(tx, replayed)
    await _insert_account(tx, account)
    for event in events:
        await append_event(tx, event)
    return account


async def _open_account_once(tx: Tx, account: Account, consumer: str, event_id: str, events: list[Message]) -> bool:
    if not await first_delivery(tx, consumer, event_id):
        return False
    await _insert_account(tx, account)
    for event in events:
        await append_event(tx, event)
    return True


async def _ensure_internal(tx: Tx, currencies: list[str], at: datetime) -> None:
    for currency in currencies:
        for internal in InternalAccount:
            await tx.execute(
                f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}) VALUES (?, '', ?, ?, ?, ?, 0, 0, NULL, ?)"
                " ON CONFLICT (account_id) DO NOTHING",
                internal.account_id(currency),
                AccountType.INTERNAL.value,
                AccountStatus.OPEN.value,
                currency,
                _features_json(AccountFeatures()),
                at.isoformat(),
            )


async def _close_account(tx: Tx, account_id: str, key: IdempotencyKey, at: datetime, events: list[Message]) -> Account:
    replayed = await claim(tx, key, account_id)
    if replayed is not None:
        return await _require_account(tx, replayed)
    account = await _require_account(tx, account_id)
    if account.type is AccountType.INTERNAL:
        raise PreconditionFailed("INTERNAL_ACCOUNT", "bank-internal accounts cannot be closed", {"account_id": account_id})
    if account.status is AccountStatus.CLOSED:
        raise PreconditionFailed("ACCOUNT_CLOSED", "the account is already closed", {"account_id": account_id})
    closed = await tx.execute(
        "UPDATE accounts SET status = ?, closed_at = ? WHERE account_id = ? AND status = ?"
        " AND balance_minor = 0 AND held_minor = 0",
        AccountStatus.CLOSED.value,
        at.isoformat(),
        account_id,
        AccountStatus.OPEN.value,
    )
    if closed != 1:
        reason = "ACCOUNT_HAS_OPEN_HOLDS" if account.held else "ACCOUNT_BALANCE_NOT_ZERO"
        raise PreconditionFailed(
            reason,
            f"only an account at zero balance without holds can be closed (balance "
            f"{account.money(account.balance)}, held {account.money(account.held)})",
            {"account_id": account_id},
        )
    for event in events:
        await append_event(tx, event)
    return await _require_account(tx, account_id)


# --- movements ------------------------------------------------------------------------------


async def _why_refused(tx: Tx, account_id: str, currency: str, change: int = 0) -> Exception:
    """After a conditional UPDATE matched nothing: the reason, in the caller's terms (`change`:
    the signed amount the balance was to move by)."""
    account = await _require_account(tx, account_id)
    if account.status is AccountStatus.CLOSED:
        return PreconditionFailed("ACCOUNT_CLOSED", f"account {account_id} is closed", {"account_id": account_id})
    if account.currency != currency:
        return PreconditionFailed(
            "CURRENCY_MISMATCH",
            f"account {account_id} is in {account.currency}, not {currency}",
            {"account_id": account_id, "account_currency": account.currency},
        )
    if abs(account.balance + change) > MAX_MINOR or account.held - min(change, 0) > MAX_MINOR:
        return balance_limit(account_id)
    return PreconditionFailed(
        "INSUFFICIENT_FUNDS",
        f"account {account_id} has {account.money(account.available)} available",
        {"account_id": account_id, "available": account.money(account.available).amount},
    )


def balance_limit(account_id: str) -> PreconditionFailed:
    return PreconditionFailed(
        "BALANCE_LIMIT_EXCEEDED",
        f"the balance of account {account_id} would pass the ledger's limit of {MAX_MINOR} minor units",
        {"account_id": account_id, "limit_minor": str(MAX_MINOR)},
    )


async def _debit(tx: Tx, account_id: str, amount: Money, *, release: int = 0) -> int:
    """Debits within the floor and the ledger's limit (after releasing `release` from held);
    the new balance."""
    row = await tx.fetchone(
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
    if row is None:
        raise await _why_refused(tx, account_id, amount.currency, -amount.minor)
    return int(row["balance_minor"])


async def _credit(tx: Tx, account_id: str, amount: Money) -> int:
    """Credits within the ledger's limit; the new balance."""
    row = await tx.fetchone(
        "UPDATE accounts SET balance_minor = balance_minor + ? WHERE account_id = ? AND status = 'OPEN'"
        " AND currency = ? AND balance_minor + ? <= ? RETURNING balance_minor",
        amount.minor,
        account_id,
        amount.currency,
        amount.minor,
        MAX_MINOR,
    )
    if row is None:
        raise await _why_refused(tx, account_id, amount.currency, amount.minor)
    return int(row["balance_minor"])


async def _post(tx: Tx, order: TransferOrder, transfer_id: str, at: datetime, *, release: int = 0) -> Transfer:
    """Posts a transfer: both balances, the transfer, two entries, the event. No idempotency here."""
    balances: dict[str, int] = {}
    for account_id in sorted((order.debit_account_id, order.credit_account_id)):
        if account_id == order.debit_account_id:
            balances[account_id] = await _debit(tx, account_id, order.amount, release=release)
        else:
            balances[account_id] = await _credit(tx, account_id, order.amount)
    transfer = Transfer(
        transfer_id,
        order.debit_account_id,
        order.credit_account_id,
        order.amount,
        order.description,
        at,
        order.reverses_transfer_id,
        order.hold_id,
    )
    await tx.execute(
        f"INSERT INTO transfers ({_TRANSFER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        transfer_id,
        order.debit_account_id,
        order.credit_account_id,
        order.amount.minor,
        order.amount.currency,
        order.description,
        order.reverses_transfer_id or None,
        order.hold_id or None,
        at.isoformat(),
    )
    posted = at.isoformat()
    debit, credit = order.debit_account_id, order.credit_account_id
    await tx.execute(
        "INSERT INTO entries (account_id, transfer_id, amount_minor, balance_after_minor,"
        " counterparty_account_id, description, posted_at) VALUES (?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?)",
        debit,
        transfer_id,
        -order.amount.minor,
        balances[debit],
        credit,
        order.description,
        posted,
        credit,
        transfer_id,
        order.amount.minor,
        balances[credit],
        debit,
        order.description,
        posted,
    )
    await append_event(tx, _transfer_posted(transfer))
    return transfer


async def _transfer(tx: Tx, order: TransferOrder, transfer_id: str, key: IdempotencyKey, at: datetime) -> Transfer:
    replayed = await claim(tx, key, transfer_id)
    if replayed is not None:
        return stored(await _select_transfer(tx, replayed), replayed)
    return await _post(tx, order, transfer_id, at)


async def _reverse(tx: Tx, transfer_id: str, reason: str, new_id: str, key: IdempotencyKey, at: datetime) -> Transfer:
    replayed = await claim(tx, key, new_id)
    if replayed is not None:
        return stored(await _select_transfer(tx, replayed), replayed)
    original = await _select_transfer(tx, transfer_id)
    if original is None:
        raise NotFound("transfer", transfer_id)
    if original.reverses_transfer_id:
        raise PreconditionFailed(
            "TRANSFER_IS_A_REVERSAL", "a reversal cannot be reversed; make a new transfer", {"transfer_id": transfer_id}
        )
    claimed = await tx.execute(
        "UPDATE transfers SET reversed_by = ? WHERE transfer_id = ? AND reversed_by IS NULL", new_id, transfer_id
    )
    if claimed != 1:
        raise PreconditionFailed("TRANSFER_ALREADY_REVERSED", "the transfer was already reversed", {"transfer_id": transfer_id})
    order = TransferOrder(
        original.credit_account_id,
        original.debit_account_id,
        original.amount,
        reason or f"reversal of {transfer_id}",
        reverses_transfer_id=transfer_id,
    )
    return await _post(tx, order, new_id, at)


async def _place_hold(
    tx: Tx, order: TransferOrder, hold_id: str, key: IdempotencyKey, at: datetime, owner: str, placed_by: str
) -> Hold:
    replayed = await claim(tx, key, hold_id)
    if replayed is not None:
        return stored(await _select_hold(tx, replayed), replayed)
    row = await tx.fetchone(
        "UPDATE accounts SET held_minor = held_minor + ? WHERE account_id = ? AND status = 'OPEN' AND currency = ?"
        " AND held_minor + ? <= ? AND (floor_minor IS NULL OR balance_minor - held_minor - ? >= floor_minor) RETURNING held_minor",
        order.amount.minor,
        order.debit_account_id,
        order.amount.currency,
        order.amount.minor,
        MAX_MINOR,
        order.amount.minor,
    )
    if row is None:
        raise await _why_refused(tx, order.debit_account_id, order.amount.currency, -order.amount.minor)
    creditor = await _require_account(tx, order.credit_account_id)
    if creditor.status is not AccountStatus.OPEN or creditor.currency != order.amount.currency:
        raise await _why_refused(tx, order.credit_account_id, order.amount.currency)
    await tx.execute(
        f"INSERT INTO holds ({_HOLD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?)",
        hold_id,
        order.debit_account_id,
        order.credit_account_id,
        order.amount.minor,
        order.amount.currency,
        HoldStatus.PLACED.value,
        order.description,
        owner,
        placed_by,
        at.isoformat(),
    )
    return stored(await _select_hold(tx, hold_id), hold_id)


async def _resolve_hold(tx: Tx, hold_id: str, status: HoldStatus, captured: int | None, transfer_id: str | None) -> Hold:
    """Moves a PLACED hold to its final state; a hold resolves at most once."""
    hold = await _select_hold(tx, hold_id)
    if hold is None:
        raise NotFound("hold", hold_id)
    resolved = await tx.execute(
        "UPDATE holds SET status = ?, captured_minor = ?, transfer_id = ? WHERE hold_id = ? AND status = ?",
        status.value,
        captured,
        transfer_id,
        hold_id,
        HoldStatus.PLACED.value,
    )
    if resolved != 1:
        raise PreconditionFailed(
            "HOLD_ALREADY_RESOLVED", f"the hold is already {hold.status.value}", {"hold_id": hold_id, "status": hold.status.value}
        )
    return hold


async def _capture_hold(
    tx: Tx, hold_id: str, amount: Money | None, transfer_id: str, key: IdempotencyKey, at: datetime
) -> tuple[Hold, Transfer]:
    replayed = await claim(tx, key, hold_id)
    if replayed is not None:
        done = stored(await _select_hold(tx, replayed), replayed)
        return done, stored(await _select_transfer(tx, done.transfer_id), done.transfer_id)
    hold = await _select_hold(tx, hold_id)
    if hold is None:
        raise NotFound("hold", hold_id)
    captured = amount or hold.amount
    if captured.currency != hold.amount.currency or captured.minor > hold.amount.minor:
        raise PreconditionFailed(
            "CAPTURE_EXCEEDS_HOLD", f"at most {hold.amount} can be captured", {"hold_id": hold_id, "held": hold.amount.amount}
        )
    await _resolve_hold(tx, hold_id, HoldStatus.CAPTURED, captured.minor, transfer_id)
    order = TransferOrder(hold.debit_account_id, hold.credit_account_id, captured, hold.description, hold_id=hold_id)
    transfer = await _post(tx, order, transfer_id, at, release=hold.amount.minor)
    return stored(await _select_hold(tx, hold_id), hold_id), transfer


async def _release_hold(tx: Tx, hold_id: str, key: IdempotencyKey) -> Hold:
    replayed = await claim(tx, key, hold_id)
    if replayed is not None:
        return stored(await _select_hold(tx, replayed), replayed)
    hold = await _resolve_hold(tx, hold_id, HoldStatus.RELEASED, None, None)
    await tx.execute(
        "UPDATE accounts SET held_minor = held_minor - ? WHERE account_id = ?", hold.amount.minor, hold.debit_account_id
    )
    return stored(await _select_hold(tx, hold_id), hold_id)


@og_component()
class SqlLedgerRepository(BaseComponent, LedgerRepository):
    """The ledger in the context's own database (SQLite file or PostgreSQL schema)."""

    def __init__(self, db: ContextDatabase) -> None:
        self._db = db

    async def open_account(self, account: Account, key: IdempotencyKey, events: list[Message]) -> Account:
        return await self._db.write(_open_account, account, key, events)

    async def open_account_once(self, account: Account, consumer: str, event_id: str, events: list[Message]) -> bool:
        return await self._db.write(_open_account_once, account, consumer, event_id, events)

    async def ensure_internal_accounts(self, currencies: list[str], at: datetime) -> None:
        await self._db.write(_ensure_internal, currencies, at)

    async def get_account(self, account_id: str) -> Account | None:
        return await self._db.read(_select_account, account_id)

    async def accounts_of(self, customer_id: str, after: int, limit: int) -> Page:
        return await self._db.read(_accounts_of, customer_id, after, limit)

    async def close_account(self, account_id: str, key: IdempotencyKey, at: datetime, events: list[Message]) -> Account:
        return await self._db.write(_close_account, account_id, key, at, events)

    async def transfer(self, order: TransferOrder, transfer_id: str, key: IdempotencyKey, at: datetime) -> Transfer:
        return await self._db.write(_transfer, order, transfer_id, key, at)

    async def get_transfer(self, transfer_id: str) -> Transfer | None:
        return await self._db.read(_select_transfer, transfer_id)

    async def reverse(self, transfer_id: str, reason: str, new_id: str, key: IdempotencyKey, at: datetime) -> Transfer:
        return await self._db.write(_reverse, transfer_id, reason, new_id, key, at)

    async def place_hold(
        self, order: TransferOrder, hold_id: str, key: IdempotencyKey, at: datetime, owner: str, placed_by: str
    ) -> Hold:
        return await self._db.write(_place_hold, order, hold_id, key, at, owner, placed_by)

    async def lookup_hold(self, scope: str, request_id: str) -> Hold | None:
        return await self._db.write(_lookup_hold, scope, request_id)

    async def holds_of(self, account_id: str, after: int, limit: int) -> Page:
        return await self._db.read(_holds_of, account_id, after, limit)

    async def capture_hold(
        self, hold_id: str, amount: Money | None, transfer_id: str, key: IdempotencyKey, at: datetime
    ) -> tuple[Hold, Transfer]:
        return await self._db.write(_capture_hold, hold_id, amount, transfer_id, key, at)

    async def release_hold(self, hold_id: str, key: IdempotencyKey) -> Hold:
        return await self._db.write(_release_hold, hold_id, key)

    async def entries(self, account_id: str, after: int, limit: int) -> Page:
        return await self._db.read(_entries, account_id, after, limit)

    async def totals(self) -> tuple[int, int, int]:
        return await self._db.read(_totals)

    async def get_hold(self, hold_id: str) -> Hold | None:
        return await self._db.read(_select_hold, hold_id)

    async def accrue_interest(
        self, business_date: str, currency: str, tiers: tuple[InterestTier, ...], after: str, limit: int, at: datetime
    ) -> AccrualChunk:
        return await self._db.write(_accrue_interest, business_date, currency, tiers, after, limit, at)

    async def charge_fees(self, first_day: date, currency: str, after: str, limit: int, at: datetime) -> FeeChunk:
        return await self._db.write(_charge_fees, first_day, currency, after, limit, at)


# --- interest (bulk, set-based) --------------------------------------------------------------


@dataclass(frozen=True)
class AccrualChunk:
    processed: int
    posted_minor: int
    last_account_id: str
    done: bool
    eligible: int


PPM = 1_000_000


def interest_sql(tiers: tuple[InterestTier, ...], balance: str = "balance_minor") -> str:
    """daily_interest (domain) as one integer SQL expression, for set-based posting.

    The rate is chosen by the tiers (rates in parts per million), and balance * rate / 365 is
    rounded half-even with integer arithmetic, so SQLite and PostgreSQL agree with the Decimal
    reference exactly (tests/unit/test_interest_rules.py cross-checks them). No intermediate
    leaves 64 bits for any balance up to MAX_MINOR and any rate below 1: the balance is split as
    hi * 10^6 + lo, so that balance * rate = (hi * rate) * 10^6 + lo * rate, and
    hi * rate = 365 * qa + ra gives balance * rate = qa * (365 * 10^6) + (ra * 10^6 + lo * rate),
    where every product stays below 10^16. (A plain balance * rate overflows: SQLite would turn
    it into a float, PostgreSQL would fail.)
    """
    cases = " ".join(
        f"WHEN {balance} <= {t.up_to_minor} THEN {int(t.annual_rate * PPM)}" for t in tiers if t.up_to_minor is not None
    )
    last = int(tiers[-1].annual_rate * PPM)
    rate = f"(CASE {cases} ELSE {last} END)" if cases else str(last)
    den = 365 * PPM
    hi, lo = f"({balance} / {PPM})", f"({balance} - ({balance} / {PPM}) * {PPM})"
    high = f"({hi} * {rate})"
    qa, ra = f"({high} / 365)", f"({high} - ({high} / 365) * 365)"
    rest = f"({ra} * {PPM} + {lo} * {rate})"
    # Remainders as a - (a / b) * b: no '%' (a placeholder to psycopg), integer division on both engines.
    quotient = f"({qa} + {rest} / {den})"
    remainder = f"({rest} - ({rest} / {den}) * {den})"
    parity = f"({quotient} - ({quotient} / 2) * 2)"
    return (
        f"(CASE WHEN {balance} <= 0 THEN 0 ELSE {quotient} + CASE WHEN 2 * {remainder} > {den} THEN 1"
        f" WHEN 2 * {remainder} = {den} THEN {parity} ELSE 0 END END)"
    )


# Interest of a business date goes to the interest-bearing open accounts of the currency that were
# opened on or before that date (an account opened today earns nothing for last June): the two
# parameters are the currency and the first instant after the date (opened_at is ISO text in UTC).
_ELIGIBLE = "interest_bearing = 1 AND status = 'OPEN' AND currency = ? AND opened_at < ?"


def _day_after(business_date: str) -> str:
    return f"{date.fromisoformat(business_date) + timedelta(days=1)}T00:00:00+00:00"


# The chunk's postings, computed once and read by every statement after it: a table private to
# the connection on both engines, emptied before every chunk.
_ROWS_DDL = {
    "sqlite": "CREATE TEMP TABLE IF NOT EXISTS accrual_rows (account_id TEXT PRIMARY KEY, transfer_id TEXT NOT NULL,"
    " amount_minor BIGINT NOT NULL)",
    "postgres": "CREATE TEMP TABLE IF NOT EXISTS accrual_rows (account_id TEXT PRIMARY KEY, transfer_id TEXT NOT NULL,"
    " amount_minor BIGINT NOT NULL) ON COMMIT DELETE ROWS",
}
_ENTRY_COLUMNS = "account_id, transfer_id, amount_minor, balance_after_minor, counterparty_account_id, description, posted_at"


@dataclass(frozen=True)
class _Span:
    """The eligible accounts with after < account_id <= last, for one business date."""

    business_date: str
    currency: str
    after: str
    last: str

    def transfer_id_sql(self, account_id: str = "account_id") -> str:
        """The deterministic transfer id of an account's interest for the date: a second posting collides."""
        return f"'trf_INT' || '{self.business_date.replace('-', '')}' || substr({account_id}, 5)"


async def _accrue_interest(
    tx: Tx, business_date: str, currency: str, tiers: tuple[InterestTier, ...], after: str, limit: int, at: datetime
) -> AccrualChunk:
    """One chunk of the day's accrual, in a fixed number of set-based statements whatever its
    size. A posted chunk is recorded as the range (after, last] it covered, zero-interest accounts
    included, so a chunk asked for again (a run resumed) answers from that record and posts
    nothing; the deterministic transfer id per (account, date) is the last guard."""
    eligible = await _count_eligible(tx, currency, business_date) if not after else 0
    recorded = await _recorded_chunk(tx, business_date, currency, after)
    if recorded is not None:
        return AccrualChunk(recorded.processed, recorded.posted_minor, recorded.last_account_id, False, eligible)
    ceiling = await _next_recorded_start(tx, business_date, after)
    edge = await aggregate(
        tx,
        f"SELECT MAX(account_id) AS last, COUNT(*) AS n FROM (SELECT account_id FROM accounts WHERE {_ELIGIBLE}"
        " AND account_id > ? AND (? = '' OR account_id <= ?) ORDER BY account_id LIMIT ?) chunk",
        currency,
        _day_after(business_date),
        after,
        ceiling,
        ceiling,
        limit,
    )
    count = int(edge["n"])
    if not count:
        return AccrualChunk(0, 0, ceiling or after, not ceiling, eligible)
    span = _Span(business_date, currency, after, str(edge["last"]))
    posted = await _post_span(tx, span, tiers, at)
    await tx.execute(
        "INSERT INTO interest_chunks (business_date, after_account_id, last_account_id, processed, posted_minor)"
        " VALUES (?, ?, ?, ?, ?)",
        business_date,
        after,
        span.last,
        count,
        posted,
    )
    return AccrualChunk(count, posted, span.last, count < limit and not ceiling, eligible)


async def _count_eligible(tx: Tx, currency: str, business_date: str) -> int:
    counted = await aggregate(tx, f"SELECT COUNT(*) AS n FROM accounts WHERE {_ELIGIBLE}", currency, _day_after(business_date))
    return int(counted["n"])


async def _recorded_chunk(tx: Tx, business_date: str, currency: str, after: str) -> AccrualChunk | None:
    """The recorded chunk that covers the account after `after`, if any, as done from `after` on."""
    row = await tx.fetchone(
        "SELECT after_account_id, last_account_id, processed, posted_minor FROM interest_chunks"
        " WHERE business_date = ? AND after_account_id <= ? AND last_account_id > ?",
        business_date,
        after,
        after,
    )
    if row is None:
        return None
    if row["after_account_id"] == after:
        return AccrualChunk(int(row["processed"]), int(row["posted_minor"]), str(row["last_account_id"]), False, 0)
    # A cursor inside a recorded chunk (the batch runner's never is): count what is done after it.
    span = _Span(business_date, currency, after, str(row["last_account_id"]))
    done = await aggregate(
        tx,
        f"SELECT COUNT(*) AS n, COALESCE(SUM(t.amount_minor), 0) AS posted FROM accounts a LEFT JOIN transfers t"
        f" ON t.transfer_id = {span.transfer_id_sql('a.account_id')} WHERE a.{_ELIGIBLE.replace(' AND ', ' AND a.')}"
        " AND a.account_id > ? AND a.account_id <= ?",
        currency,
        _day_after(business_date),
        after,
        span.last,
    )
    return AccrualChunk(int(done["n"]), int(done["posted"]), span.last, False, 0)


async def _next_recorded_start(tx: Tx, business_date: str, after: str) -> str:
    """Where the next recorded chunk begins ('' if none): a new chunk must stop there."""
    row = await aggregate(
        tx,
        "SELECT MIN(after_account_id) AS start FROM interest_chunks WHERE business_date = ? AND after_account_id > ?",
        business_date,
        after,
    )
    return str(row["start"]) if row["start"] is not None else ""


async def _refuse_past_limit(tx: Tx) -> None:
    """A chunk that would take an account past the ledger's limit is refused whole: posting the
    others and skipping one would pay interest unevenly without anyone noticing."""
    over = await tx.fetchone(
        "SELECT r.account_id FROM accrual_rows r JOIN accounts a ON a.account_id = r.account_id"
        " WHERE a.balance_minor > ? - r.amount_minor ORDER BY r.account_id LIMIT 1",
        MAX_MINOR,
    )
    if over is not None:
        raise balance_limit(str(over["account_id"]))


async def _post_span(tx: Tx, span: _Span, tiers: tuple[InterestTier, ...], at: datetime) -> int:
    """Posts the span's interest as one transfer per account from the interest expense account:
    the transfers, both entries of each, and both balances. Returns the total posted."""
    await tx.execute(_ROWS_DDL[tx.dialect])
    await tx.execute("DELETE FROM accrual_rows")
    await tx.execute(
        f"INSERT INTO accrual_rows (account_id, transfer_id, amount_minor) SELECT account_id, {span.transfer_id_sql()},"
        f" interest FROM (SELECT account_id, {interest_sql(tiers)} AS interest FROM accounts WHERE {_ELIGIBLE}"
        " AND account_id > ? AND account_id <= ?) chunk WHERE interest > 0",
        span.currency,
        _day_after(span.business_date),
        span.after,
        span.last,
    )
    total = int((await aggregate(tx, "SELECT COALESCE(SUM(amount_minor), 0) AS total FROM accrual_rows"))["total"])
    if not total:
        return 0
    await _refuse_past_limit(tx)
    await _post_rows(
        tx,
        InternalAccount.INTEREST_EXPENSE.account_id(span.currency),
        span.currency,
        total,
        f"interest {span.business_date}",
        at,
        to_rows=True,
    )
    return total


async def _post_rows(tx: Tx, internal: str, currency: str, total: int, description: str, at: datetime, *, to_rows: bool) -> None:
    """Posts one transfer per row of accrual_rows between the row's account and a bank-internal
    account (to the rows: interest; from them: fees), set-based: the transfers, both entries of
    each (the internal account's with its running balance) and every balance."""
    sign = 1 if to_rows else -1
    internal_row = await tx.fetchone(
        "UPDATE accounts SET balance_minor = balance_minor - ? WHERE account_id = ? AND ABS(balance_minor - ?) <= ? RETURNING balance_minor",
        sign * total,
        internal,
        sign * total,
        MAX_MINOR,
    )
    if internal_row is None:
        raise balance_limit(internal)
    internal_start = int(internal_row["balance_minor"]) + sign * total
    debit, credit = ("?", "account_id") if to_rows else ("account_id", "?")
    posted = at.isoformat()
    await tx.execute(
        f"INSERT INTO transfers ({_TRANSFER_COLUMNS}) SELECT transfer_id, {debit}, {credit}, amount_minor, ?, ?,"
        " NULL, NULL, ? FROM accrual_rows",
        internal,
        currency,
        description,
        posted,
    )
    moved = await tx.execute(
        f"UPDATE accounts SET balance_minor = accounts.balance_minor + {sign} * r.amount_minor FROM accrual_rows r"
        f" WHERE accounts.account_id = r.account_id AND (accounts.floor_minor IS NULL"
        f" OR accounts.balance_minor - accounts.held_minor + {sign} * r.amount_minor >= accounts.floor_minor)"
    )
    rows = await aggregate(tx, "SELECT COUNT(*) AS n FROM accrual_rows")
    if moved != int(rows["n"]):  # a movement meanwhile left too little for a fee: nothing of the chunk stays
        raise Aborted("CONCURRENT_MOVEMENT", "an account moved while the chunk was posted; ask for the chunk again", {})
    await tx.execute(
        f"INSERT INTO entries ({_ENTRY_COLUMNS}) SELECT r.account_id, r.transfer_id, {sign} * r.amount_minor, a.balance_minor,"
        " ?, ?, ? FROM accrual_rows r JOIN accounts a ON a.account_id = r.account_id",
        internal,
        description,
        posted,
    )
    await tx.execute(
        f"INSERT INTO entries ({_ENTRY_COLUMNS}) SELECT ?, transfer_id, {-sign} * amount_minor,"
        f" ? - {sign} * SUM(amount_minor) OVER (ORDER BY account_id ROWS UNBOUNDED PRECEDING), account_id, ?, ? FROM accrual_rows",
        internal,
        internal_start,
        description,
        posted,
    )


# --- monthly maintenance fees (bulk, set-based) ------------------------------------------------


@dataclass(frozen=True)
class FeeChunk:
    processed: int  # accounts with a fee examined in the chunk
    charged: int
    charged_minor: int
    unpaid: int  # due, but the account could not cover it within its floor: not charged
    last_account_id: str
    done: bool


# The features are stored as JSON with each account (what its product offered when it opened).
_FEATURE = {
    "sqlite": "CAST(json_extract(a.features_json, '$.{name}') AS INTEGER)",
    "postgres": "CAST(a.features_json::jsonb ->> '{name}' AS BIGINT)",
}
_WITH_FEE = "a.type <> 'INTERNAL' AND a.status = 'OPEN' AND a.currency = ? AND a.opened_at < ? AND {fee} > 0"


@dataclass(frozen=True)
class _Month:
    """A calendar month, as the text bounds that posted_at and opened_at compare with."""

    first_day: date

    @property
    def start(self) -> str:
        return f"{self.first_day}T00:00:00+00:00"

    @property
    def end(self) -> str:
        after = (self.first_day + timedelta(days=32)).replace(day=1)
        return f"{after}T00:00:00+00:00"

    @property
    def key(self) -> str:
        return self.first_day.strftime("%Y-%m")


def _due_rows_sql(dialect: str, month: _Month) -> str:
    """The accounts of a span whose fee is due, with what they can pay: fee_due (domain) in SQL."""
    fee, minimum = (_FEATURE[dialect].format(name=n) for n in ("monthly_fee", "minimum_balance"))
    lowest = "CASE WHEN low IS NULL THEN COALESCE(carried, 0) WHEN carried IS NULL OR low < carried THEN low ELSE carried END"
    return (
        f"SELECT account_id, 'trf_FEE' || '{month.key.replace('-', '')}' || substr(account_id, 5) AS transfer_id, fee,"
        " (floor_minor IS NULL OR balance_minor - held_minor - fee >= floor_minor) AS covered FROM ("
        f"SELECT a.account_id, a.balance_minor, a.held_minor, a.floor_minor, {fee} AS fee, {minimum} AS minimum,"
        " (SELECT MIN(e.balance_after_minor) FROM entries e WHERE e.account_id = a.account_id AND e.posted_at >= ?"
        " AND e.posted_at < ?) AS low,"
        " CASE WHEN a.opened_at < ? THEN COALESCE((SELECT e.balance_after_minor FROM entries e WHERE e.account_id = a.account_id"
        " AND e.posted_at < ? ORDER BY e.seq DESC LIMIT 1), 0) END AS carried"
        f" FROM accounts a WHERE {_WITH_FEE.format(fee=fee)} AND a.account_id > ? AND a.account_id <= ?) x"
        f" WHERE {lowest} < minimum"
    )


async def _charge_fees(tx: Tx, first_day: date, currency: str, after: str, limit: int, at: datetime) -> FeeChunk:
    """One chunk of a month's fees: recorded once, answered from the record when asked again."""
    month = _Month(first_day)
    recorded = await tx.fetchone(
        "SELECT last_account_id, processed, charged, charged_minor, unpaid FROM fee_chunks WHERE month = ? AND currency = ?"
        " AND after_account_id = ?",
        month.key,
        currency,
        after,
    )
    if recorded is not None:
        return FeeChunk(
            int(recorded["processed"]),
            int(recorded["charged"]),
            int(recorded["charged_minor"]),
            int(recorded["unpaid"]),
            str(recorded["last_account_id"]),
            False,
        )
    fee = _FEATURE[tx.dialect].format(name="monthly_fee")
    edge = await aggregate(
        tx,
        f"SELECT MAX(account_id) AS last, COUNT(*) AS n FROM (SELECT a.account_id FROM accounts a WHERE {_WITH_FEE.format(fee=fee)}"
        " AND a.account_id > ? ORDER BY a.account_id LIMIT ?) chunk",
        currency,
        month.end,
        after,
        limit,
    )
    count = int(edge["n"])
    if not count:
        return FeeChunk(0, 0, 0, 0, after, True)
    last = str(edge["last"])
    await tx.execute(_ROWS_DDL[tx.dialect])
    await tx.execute("DELETE FROM accrual_rows")
    due = await tx.fetchall(
        _due_rows_sql(tx.dialect, month), month.start, month.end, month.start, month.start, currency, month.end, after, last
    )
    payable = [(r["account_id"], r["transfer_id"], r["fee"]) for r in due if r["covered"]]
    if payable:
        await tx.executemany("INSERT INTO accrual_rows (account_id, transfer_id, amount_minor) VALUES (?, ?, ?)", payable)
        total = sum(int(r[2]) for r in payable)
        await _post_rows(
            tx, InternalAccount.FEE_INCOME.account_id(currency), currency, total, f"monthly fee {month.key}", at, to_rows=False
        )
    chunk = FeeChunk(count, len(payable), sum(int(r[2]) for r in payable), len(due) - len(payable), last, count < limit)
    await tx.execute(
        "INSERT INTO fee_chunks (month, currency, after_account_id, last_account_id, processed, charged, charged_minor, unpaid)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        month.key,
        currency,
        after,
        last,
        chunk.processed,
        chunk.charged,
        chunk.charged_minor,
        chunk.unpaid,
    )
    return chunk
