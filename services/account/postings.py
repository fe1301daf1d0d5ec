"""Accounts and transfers in SQL: the rows a movement decides on, locked, and the writes that
apply what the domain decided (a debit, a credit, a transfer with its two entries).

The use case locks the accounts it moves (`Accounts.locked`) before the domain decides, so each
write below happens over the rows the decision saw. Every UPDATE still keeps the decision's
condition, as a guard: one that trips under the lock is a bug, answered ABORTED, never a wrong
balance. A movement locks its accounts in one statement, in id order; the lock is FOR NO KEY
UPDATE on PostgreSQL, which the foreign-key checks of the set-based postings' inserts do not
wait on. Where two units could still wait on each other in a cycle, PostgreSQL ends one and the
database layer runs it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from common.audit import acting, record_change
from common.db.base import Row, Tx, aggregate, row_lock, stored
from common.db.keyset import Page, keyset_page
from common.errors import Aborted
from common.events.inbox import first_delivery
from common.money import MAX_MINOR, Money
from services.account.domain import Account, AccountStatus, Entry, Transfer, TransferOrder
from services.account.narrative import EntryText
from services.account.tables import (
    ACCOUNT_COLUMNS,
    ENTRY_COLUMNS,
    REMITTANCE_COLUMNS,
    TRANSFER_COLUMNS,
    TRANSFER_READ_COLUMNS,
    account_of,
    features_json,
    remittance_row,
    transfer_of,
)

INSERT_TRANSFER = f"INSERT INTO transfers ({TRANSFER_COLUMNS}, {REMITTANCE_COLUMNS}) VALUES ({', '.join('?' * 13)})"
INSERT_ENTRY = f"INSERT INTO entries ({ENTRY_COLUMNS}, {REMITTANCE_COLUMNS}) VALUES ({', '.join('?' * 10)})"
# What a statement reads of an entry (statements.py reads the same).
ENTRY_SELECT = (
    "SELECT e.seq AS seq, e.transfer_id, e.amount_minor, e.balance_after_minor, e.counterparty_account_id,"
    " e.description, e.posted_at, e.counterparty_name, e.counterparty_iban, e.reference, a.currency"
    " FROM entries e JOIN accounts a ON a.account_id = e.account_id"
)


def _moved(row: Row | None, account_id: str) -> int:
    """The balance a guarded write left; a guard that tripped under the lock aborts the unit."""
    if row is None:
        raise Aborted("CONCURRENT_MOVEMENT", f"account {account_id} changed under its lock; retry with the same request_id", {})
    return int(row["balance_minor"])


class Accounts:
    """The accounts of one transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def get(self, account_id: str) -> Account | None:
        row = await self._tx.fetchone(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ?", account_id)
        return account_of(row) if row else None

    async def stored(self, account_id: str) -> Account:
        return stored(await self.get(account_id), account_id)

    async def locked(self, account_ids: Sequence[str]) -> dict[str, Account]:
        """The accounts (those that exist), locked in id order until the unit ends (SQLite: the
        unit holds the database's write lock already)."""
        return await self._select(account_ids, row_lock(self._tx))

    async def read(self, account_ids: Sequence[str]) -> dict[str, Account]:
        """The accounts (those that exist), as committed, without a lock."""
        return await self._select(account_ids, "")

    async def _select(self, account_ids: Sequence[str], lock: str) -> dict[str, Account]:
        ids = sorted(set(account_ids))
        if not ids:
            return {}
        rows = await self._tx.fetchall(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id IN ({', '.join('?' for _ in ids)})"
            f" ORDER BY account_id{lock}",
            *ids,
        )
        return {row["account_id"]: account_of(row) for row in rows}

    async def page(self, customer_id: str, after: int, limit: int) -> Page[Account, int]:
        select = f"SELECT seq, {ACCOUNT_COLUMNS} FROM accounts"
        return await keyset_page(self._tx, select, "customer_id = ?", [customer_id], after, limit, account_of)

    async def add(self, account: Account) -> None:
        await self._tx.execute(
            f"INSERT INTO accounts ({ACCOUNT_COLUMNS}, interest_bearing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            account.account_id,
            account.customer_id,
            account.type.value,
            account.status.value,
            account.currency,
            features_json(account.features),
            account.balance,
            account.held,
            account.floor,
            account.opened_at.isoformat(),
            int(account.features.interest_bearing),
        )

    async def add_for_event(self, account: Account, consumer: str, event_id: str) -> bool:
        """Adds `account` unless `consumer` handled `event_id` already (the inbox); whether added."""
        if not await first_delivery(self._tx, consumer, event_id):
            return False
        await self.add(account)
        await record_change(self._tx, "OpenDefaultAccount", account.account_id, event_id)
        return True

    async def add_missing(self, accounts: Sequence[Account]) -> None:
        """Adds those of `accounts` not there yet (the bank's own, at every start)."""
        for account in accounts:
            await self._tx.execute(
                f"INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0, 0, NULL, ?)"
                " ON CONFLICT (account_id) DO NOTHING",
                account.account_id,
                account.customer_id,
                account.type.value,
                account.status.value,
                account.currency,
                features_json(account.features),
                account.opened_at.isoformat(),
            )

    async def close(self, account_id: str, at: datetime) -> None:
        closed = await self._tx.execute(
            "UPDATE accounts SET status = ?, closed_at = ? WHERE account_id = ? AND status = ?"
            " AND balance_minor = 0 AND held_minor = 0",
            AccountStatus.CLOSED.value,
            at.isoformat(),
            account_id,
            AccountStatus.OPEN.value,
        )
        if closed != 1:
            raise Aborted("CONCURRENT_MOVEMENT", f"account {account_id} changed under its lock", {"account_id": account_id})

    async def debit(self, account_id: str, amount: Money, *, release: int = 0) -> int:
        """Debits (after freeing `release` of what it holds); the new balance."""
        row = await self._tx.fetchone(
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
        return _moved(row, account_id)

    async def credit(self, account_id: str, amount: Money) -> int:
        """Credits; the new balance."""
        row = await self._tx.fetchone(
            "UPDATE accounts SET balance_minor = balance_minor + ? WHERE account_id = ? AND status = 'OPEN'"
            " AND currency = ? AND balance_minor + ? <= ? RETURNING balance_minor",
            amount.minor,
            account_id,
            amount.currency,
            amount.minor,
            MAX_MINOR,
        )
        return _moved(row, account_id)

    async def reserve(self, account_id: str, amount: Money) -> None:
        row = await self._tx.fetchone(
            "UPDATE accounts SET held_minor = held_minor + ? WHERE account_id = ? AND status = 'OPEN' AND currency = ?"
            " AND held_minor + ? <= ? AND (floor_minor IS NULL OR balance_minor - held_minor - ? >= floor_minor)"
            " RETURNING balance_minor",
            amount.minor,
            account_id,
            amount.currency,
            amount.minor,
            MAX_MINOR,
            amount.minor,
        )
        _moved(row, account_id)

    async def free(self, account_id: str, amount: Money) -> None:
        """Frees `amount` the account held for a hold released."""
        freed = await self._tx.execute(
            "UPDATE accounts SET held_minor = held_minor - ? WHERE account_id = ? AND held_minor >= ?",
            amount.minor,
            account_id,
            amount.minor,
        )
        if freed != 1:
            raise Aborted("CONCURRENT_MOVEMENT", f"account {account_id} holds less than its hold", {"account_id": account_id})

    async def totals(self) -> tuple[int, int, int]:
        """(sum of debits, sum of credits, sum of balances) over the whole ledger."""
        row = await aggregate(
            self._tx,
            "SELECT COALESCE(SUM(CASE WHEN amount_minor < 0 THEN -amount_minor ELSE 0 END), 0) AS debits,"
            " COALESCE(SUM(CASE WHEN amount_minor > 0 THEN amount_minor ELSE 0 END), 0) AS credits FROM entries",
        )
        balances = await aggregate(self._tx, "SELECT COALESCE(SUM(balance_minor), 0) AS total FROM accounts")
        return int(row["debits"]), int(row["credits"]), int(balances["total"])


class Transfers:
    """The transfers of one transaction, with their entries."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def get(self, transfer_id: str) -> Transfer | None:
        row = await self._tx.fetchone(f"SELECT {TRANSFER_READ_COLUMNS} FROM transfers WHERE transfer_id = ?", transfer_id)
        return transfer_of(row) if row else None

    async def locked(self, transfer_id: str) -> Transfer | None:
        lock = row_lock(self._tx)
        row = await self._tx.fetchone(f"SELECT {TRANSFER_READ_COLUMNS} FROM transfers WHERE transfer_id = ?{lock}", transfer_id)
        return transfer_of(row) if row else None

    async def stored(self, transfer_id: str) -> Transfer:
        return stored(await self.get(transfer_id), transfer_id)

    async def add(self, order: TransferOrder, transfer_id: str, at: datetime, balances: dict[str, int]) -> Transfer:
        """The transfer of `order` and its two entries (each with its account's balance after
        it), in the name of whoever acts in this unit."""
        transfer = Transfer(
            transfer_id,
            order.debit_account_id,
            order.credit_account_id,
            order.amount,
            order.description,
            at,
            order.reverses_transfer_id,
            order.hold_id,
            actor=self.actor(),
            remittance=order.remittance,
        )
        await self.add_many([(transfer, balances[transfer.debit_account_id], balances[transfer.credit_account_id])])
        return transfer

    def actor(self) -> str:
        """Whose authority posts in this unit, through which contexts."""
        return acting(self._tx.context)

    async def add_many(self, posted: Sequence[tuple[Transfer, int, int]]) -> None:
        """Transfers, each with its two entries: its debited and credited accounts' balances after it."""
        await self._tx.executemany(INSERT_TRANSFER, [transfer_row(t) for t, _, _ in posted])
        await self._tx.executemany(INSERT_ENTRY, [row for t, debit, credit in posted for row in entry_rows(t, debit, credit)])

    async def mark_reversed(self, transfer_id: str, by: str) -> None:
        marked = await self._tx.execute(
            "UPDATE transfers SET reversed_by = ? WHERE transfer_id = ? AND reversed_by IS NULL", by, transfer_id
        )
        if marked != 1:
            raise Aborted("CONCURRENT_MOVEMENT", "the transfer changed under its lock", {"transfer_id": transfer_id})

    async def entries(self, account_id: str, after: int, limit: int) -> Page[Entry, int]:
        return await keyset_page(self._tx, ENTRY_SELECT, "e.account_id = ?", [account_id], after, limit, entry_of, key="e.seq")


def entry_of(row: Row) -> Entry:
    return Entry(
        transfer_id=row["transfer_id"],
        amount=Money(row["currency"], row["amount_minor"]),
        balance_after=Money(row["currency"], row["balance_after_minor"]),
        counterparty_account_id=row["counterparty_account_id"],
        description=row["description"],
        posted_at=datetime.fromisoformat(row["posted_at"]),
        counterparty_name=row["counterparty_name"],
        counterparty_iban=row["counterparty_iban"],
        reference=row["reference"],
    )


def transfer_row(t: Transfer) -> tuple[object, ...]:
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
        *remittance_row(t.remittance),
    )


def entry_rows(t: Transfer, debit_after: int, credit_after: int) -> list[tuple[object, ...]]:
    """The transfer's two entries, each with its account's balance after it and what it says
    (the domain's Transfer.entry_texts)."""
    posted, debit, credit = t.posted_at.isoformat(), t.debit_account_id, t.credit_account_id
    out, into = t.entry_texts()
    return [
        (debit, t.transfer_id, -t.amount.minor, debit_after, credit, out.description, posted, *_texts(out)),
        (credit, t.transfer_id, t.amount.minor, credit_after, debit, into.description, posted, *_texts(into)),
    ]


def _texts(text: EntryText) -> tuple[str, str, str]:
    return (text.counterparty_name, text.counterparty_iban, text.reference)
