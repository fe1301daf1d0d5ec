"""The ledger's movements in SQL: reads of the rows the domain decides on, and the guarded
writes that apply its decisions (a debit, a credit, a posted transfer with its two entries).

Every UPDATE keeps a condition that guards the decision against a change committed in between;
a guard that trips makes the domain decide again on the row as it now is (`decided`). Accounts
are updated in id order so that concurrent transfers on PostgreSQL cannot deadlock each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from common.audit import acting
from common.db.base import Row, Tx, stored
from common.errors import Aborted, NotFound
from common.money import MAX_MINOR, Money
from services.account.domain import (
    Account,
    Hold,
    Transfer,
    TransferOrder,
    TransferPosted,
)
from services.account.messages import OUTGOING
from services.account.tables import (
    ACCOUNT_COLUMNS,
    ENTRY_COLUMNS,
    HOLD_COLUMNS,
    TRANSFER_COLUMNS,
    TRANSFER_READ_COLUMNS,
    account_of,
    hold_of,
    transfer_of,
)

DECISIONS = 3  # a guard that trips this often is a row under a storm of writes: the caller retries

# --- reads ----------------------------------------------------------------------------------


async def select_account(tx: Tx, account_id: str) -> Account | None:
    row = await tx.fetchone(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ?", account_id)
    return account_of(row) if row else None


async def select_accounts(tx: Tx, account_ids: list[str]) -> dict[str, Account]:
    rows = await tx.fetchall(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id IN ({', '.join('?' for _ in account_ids)})", *account_ids
    )
    return {row["account_id"]: account_of(row) for row in rows}


async def require_account(tx: Tx, account_id: str) -> Account:
    account = await select_account(tx, account_id)
    if account is None:
        raise NotFound("account", account_id)
    return account


async def select_transfer(tx: Tx, transfer_id: str) -> Transfer | None:
    row = await tx.fetchone(f"SELECT {TRANSFER_READ_COLUMNS} FROM transfers WHERE transfer_id = ?", transfer_id)
    return transfer_of(row) if row else None


async def select_hold(tx: Tx, hold_id: str) -> Hold | None:
    row = await tx.fetchone(f"SELECT {HOLD_COLUMNS} FROM holds WHERE hold_id = ?", hold_id)
    return hold_of(row) if row else None


async def require_hold(tx: Tx, hold_id: str) -> Hold:
    hold = await select_hold(tx, hold_id)
    if hold is None:
        raise NotFound("hold", hold_id)
    return hold


# --- decisions, guarded -----------------------------------------------------------------------


async def decided(
    tx: Tx,
    account_id: str,
    decide: Callable[[Account], None],
    write: Callable[[], Awaitable[Row | None]],
    read: Account | None = None,
) -> Row:
    """The domain decides on the account as it is (`read`: as it was just read), then `write`
    applies the decision under its guard; a guard that finds the row changed since makes the
    domain decide again on the new row."""
    for _ in range(DECISIONS):
        decide(read or await require_account(tx, account_id))
        read = None
        row = await write()
        if row is not None:
            return row
    raise Aborted(
        "CONCURRENT_MOVEMENT", f"account {account_id} kept changing; retry with the same request_id", {"account_id": account_id}
    )


# --- accounts -------------------------------------------------------------------------------


# --- movements ------------------------------------------------------------------------------


async def debit_balance(tx: Tx, account_id: str, amount: Money, *, release: int = 0, read: Account | None = None) -> int:
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

    row = await decided(tx, account_id, lambda account: account.require_debit(amount, release=release), debit, read)
    return int(row["balance_minor"])


async def credit_balance(tx: Tx, account_id: str, amount: Money, *, read: Account | None = None) -> int:
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

    row = await decided(tx, account_id, lambda account: account.require_credit(amount), credit, read)
    return int(row["balance_minor"])


async def post_transfer(tx: Tx, order: TransferOrder, transfer_id: str, at: datetime, *, release: int = 0) -> Transfer:
    """Posts a transfer: both balances, the transfer, two entries, the event. No idempotency here."""
    balances: dict[str, int] = {}
    sides = sorted((order.debit_account_id, order.credit_account_id))  # one lock order: no deadlock
    accounts = await select_accounts(tx, sides)  # both in one read
    for account_id in sides:
        read = accounts.get(account_id)
        if read is None:
            raise NotFound("account", account_id)
        if account_id == order.debit_account_id:
            balances[account_id] = await debit_balance(tx, account_id, order.amount, release=release, read=read)
        else:
            balances[account_id] = await credit_balance(tx, account_id, order.amount, read=read)
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
    )


def entry_rows(t: Transfer, debit_after: int, credit_after: int) -> list[tuple[object, ...]]:
    """The transfer's two entries, each with its account's balance after it."""
    posted, debit, credit = t.posted_at.isoformat(), t.debit_account_id, t.credit_account_id
    return [
        (debit, t.transfer_id, -t.amount.minor, debit_after, credit, t.description, posted),
        (credit, t.transfer_id, t.amount.minor, credit_after, debit, t.description, posted),
    ]


INSERT_TRANSFER = f"INSERT INTO transfers ({TRANSFER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_ENTRY = f"INSERT INTO entries ({ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"


async def _insert_transfer(tx: Tx, t: Transfer, balances: dict[str, int]) -> None:
    """The transfer and its two entries (each with the balance after it)."""
    await tx.execute(INSERT_TRANSFER, *transfer_row(t))
    await tx.executemany(INSERT_ENTRY, entry_rows(t, balances[t.debit_account_id], balances[t.credit_account_id]))


async def stored_transfer(tx: Tx, transfer_id: str) -> Transfer:
    return stored(await select_transfer(tx, transfer_id), transfer_id)
