"""The ledger in SQL, written once for SQLite and PostgreSQL.

Every movement is one unit of work: the idempotency key, both balance updates, the transfer, its
two entries and its event commit together or not at all. The domain decides, on the rows read
here (Account, Hold, Transfer); every UPDATE keeps a condition that guards that decision against
a change committed in between, and a guard that trips makes the domain decide again on the row
as it now is. Accounts are updated in id order so that concurrent transfers on PostgreSQL cannot
deadlock each other. The guarded movements themselves are in postings.py, holds in holds.py,
charges in charges.py, and the set-based postings in bulk_postings.py (interest) and bulk_fees.py (fees).
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import date, datetime
from typing import Protocol

from common.audit import record_change
from common.db.base import Row, Tx, aggregate
from common.db.databases import ContextDatabase
from common.db.idempotency import claim, once, resource_or_void
from common.db.keyset import Page, keyset_page
from common.di import BaseComponent, og_component
from common.errors import Aborted, NotFound, PreconditionFailed
from common.events.inbox import first_delivery
from common.idempotency import IdempotencyKey
from common.money import Money
from kernel.interest import InterestTier
from services.account import bulk_fees, bulk_postings
from services.account.bulk_fees import FeeChunk
from services.account.bulk_postings import AccrualChunk
from services.account.charges import lookup_charge, post_charges
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
    InternalAccount,
    Transfer,
    TransferOrder,
    floor_of,
)
from services.account.holds import capture_hold, place_hold, release_hold
from services.account.messages import OUTGOING
from services.account.postings import (
    DECISIONS,
    decided,
    post_transfer,
    require_account,
    select_account,
    select_hold,
    select_transfer,
    stored_transfer,
)
from services.account.tables import (
    ACCOUNT_COLUMNS,
    HOLD_COLUMNS,
    account_of,
    features_json,
    hold_of,
)


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
        self,
        business_date: str,
        currency: str,
        tiers: tuple[InterestTier, ...],
        after: str,
        limit: int,
        at: datetime,
        key: IdempotencyKey,
    ) -> AccrualChunk: ...

    async def charge_fees(
        self, first_day: date, currency: str, after: str, limit: int, at: datetime, key: IdempotencyKey
    ) -> FeeChunk: ...

    async def post_charges(self, orders: list[tuple[ChargeOrder, IdempotencyKey, str]], at: datetime) -> list[Charge]:
        """Each (order, its key, the id it gets if posted): posted whole or rejected, in order."""

    async def lookup_charge(self, scope: str, request_id: str) -> Charge | None:
        """The charge `scope`'s order with `request_id` posted; None (and the id closed) if none."""

    async def totals(self) -> tuple[int, int, int]:
        """(sum of debits, sum of credits, sum of balances) over the whole ledger."""


async def _accounts_of(tx: Tx, customer_id: str, after: int, limit: int) -> Page[Account, int]:
    select = f"SELECT seq, {ACCOUNT_COLUMNS} FROM accounts"
    return await keyset_page(tx, select, "customer_id = ?", [customer_id], after, limit, account_of)


async def _holds_of(tx: Tx, account_id: str, after: int, limit: int) -> Page[Hold, int]:
    return await keyset_page(
        tx, f"SELECT seq, {HOLD_COLUMNS} FROM holds", "debit_account_id = ?", [account_id], after, limit, hold_of
    )


async def _lookup_hold(tx: Tx, scope: str, request_id: str) -> Hold | None:
    hold_id = await resource_or_void(tx, scope, request_id, "PlaceHold")
    return await select_hold(tx, hold_id) if hold_id else None


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

    return await once(tx, key, account.account_id, make, lambda replayed: require_account(tx, replayed))


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
    return await once(tx, key, account_id, lambda: _close(tx, account_id, at, events), lambda done: require_account(tx, done))


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

    await decided(tx, account_id, Account.require_closable, close)
    await OUTGOING.append(tx, events)
    return await require_account(tx, account_id)


async def _transfer(tx: Tx, order: TransferOrder, transfer_id: str, key: IdempotencyKey, at: datetime) -> Transfer:
    return await once(
        tx, key, transfer_id, lambda: post_transfer(tx, order, transfer_id, at), lambda done: stored_transfer(tx, done)
    )


async def _reverse(tx: Tx, transfer_id: str, reason: str, new_id: str, key: IdempotencyKey, at: datetime) -> Transfer:
    def reversal() -> Awaitable[Transfer]:
        return _reversal(tx, transfer_id, reason, new_id, at)

    return await once(tx, key, new_id, reversal, lambda done: stored_transfer(tx, done))


async def _reversal(tx: Tx, transfer_id: str, reason: str, new_id: str, at: datetime) -> Transfer:
    for _ in range(DECISIONS):
        original = await select_transfer(tx, transfer_id)
        if original is None:
            raise NotFound("transfer", transfer_id)
        order = original.reversal(reason)
        claimed = await tx.execute(
            "UPDATE transfers SET reversed_by = ? WHERE transfer_id = ? AND reversed_by IS NULL", new_id, transfer_id
        )
        if claimed == 1:
            return await post_transfer(tx, order, new_id, at)
    raise Aborted(
        "CONCURRENT_MOVEMENT", "the transfer kept changing; retry with the same request_id", {"transfer_id": transfer_id}
    )


# --- batches: a chunk is answered from its record; its request_id is held to its body ---------


async def _accrue_interest(
    tx: Tx,
    key: IdempotencyKey,
    business_date: str,
    currency: str,
    tiers: tuple[InterestTier, ...],
    after: str,
    limit: int,
    at: datetime,
) -> AccrualChunk:
    """A chunk's request_id is claimed for its range in the unit that posts it, so that the id
    sent again with another body is IDEMPOTENCY_KEY_REUSED; sent again with the same body, the
    chunk answers from its record, as it does for any request."""
    await claim(tx, key, f"interest/{business_date}/{currency}/{after}", record=False)
    return await bulk_postings.accrue_interest(tx, business_date, currency, tiers, after, limit, at)


async def _charge_fees(
    tx: Tx, key: IdempotencyKey, first_day: date, currency: str, after: str, limit: int, at: datetime
) -> FeeChunk:
    """As _accrue_interest, for a month's fees."""
    await claim(tx, key, f"fees/{first_day:%Y-%m}/{currency}/{after}", record=False)
    return await bulk_fees.charge_fees(tx, first_day, currency, after, limit, at)


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
        return await self._db.read(select_account, account_id)

    async def accounts_of(self, customer_id: str, after: int, limit: int) -> Page[Account, int]:
        return await self._db.read(_accounts_of, customer_id, after, limit)

    async def close_account(self, account_id: str, key: IdempotencyKey, at: datetime, events: list[AccountEvent]) -> Account:
        return await self._db.write(_close_account, account_id, key, at, events)

    async def transfer(self, order: TransferOrder, transfer_id: str, key: IdempotencyKey, at: datetime) -> Transfer:
        return await self._db.write(_transfer, order, transfer_id, key, at)

    async def get_transfer(self, transfer_id: str) -> Transfer | None:
        return await self._db.read(select_transfer, transfer_id)

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
        return await self._db.write(place_hold, order, hold_id, key, at, owner, placed_by, capture_as)

    async def lookup_hold(self, scope: str, request_id: str) -> Hold | None:
        return await self._db.write(_lookup_hold, scope, request_id)

    async def holds_of(self, account_id: str, after: int, limit: int) -> Page[Hold, int]:
        return await self._db.read(_holds_of, account_id, after, limit)

    async def capture_hold(
        self, hold_id: str, amount: Money | None, transfer_id: str, key: IdempotencyKey, at: datetime
    ) -> tuple[Hold, Transfer]:
        return await self._db.write(capture_hold, hold_id, amount, transfer_id, key, at)

    async def release_hold(self, hold_id: str, key: IdempotencyKey) -> Hold:
        return await self._db.write(release_hold, hold_id, key)

    async def entries(self, account_id: str, after: int, limit: int) -> Page[Entry, int]:
        return await self._db.read(_entries, account_id, after, limit)

    async def totals(self) -> tuple[int, int, int]:
        return await self._db.read(_totals)

    async def post_charges(self, orders: list[tuple[ChargeOrder, IdempotencyKey, str]], at: datetime) -> list[Charge]:
        return await self._db.write(post_charges, orders, at)

    async def lookup_charge(self, scope: str, request_id: str) -> Charge | None:
        return await self._db.write(lookup_charge, scope, request_id)

    async def get_hold(self, hold_id: str) -> Hold | None:
        return await self._db.read(select_hold, hold_id)

    async def accrue_interest(
        self,
        business_date: str,
        currency: str,
        tiers: tuple[InterestTier, ...],
        after: str,
        limit: int,
        at: datetime,
        key: IdempotencyKey,
    ) -> AccrualChunk:
        return await self._db.write(_accrue_interest, key, business_date, currency, tiers, after, limit, at)

    async def charge_fees(
        self, first_day: date, currency: str, after: str, limit: int, at: datetime, key: IdempotencyKey
    ) -> FeeChunk:
        return await self._db.write(_charge_fees, key, first_day, currency, after, limit, at)
