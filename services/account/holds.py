"""Holds in SQL: funds reserved, then captured into a transfer or released, each once. The use
case locks the hold it resolves, the domain decides, and the write below keeps the decision's
condition (still PLACED) as a guard."""

from __future__ import annotations

from common.db.base import Tx, row_lock, stored
from common.db.keyset import Page, keyset_page
from common.errors import Aborted
from services.account.domain import Hold, HoldStatus
from services.account.tables import HOLD_COLUMNS, hold_of, remittance_row


class Holds:
    """The holds of one transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def get(self, hold_id: str) -> Hold | None:
        row = await self._tx.fetchone(f"SELECT {HOLD_COLUMNS} FROM holds WHERE hold_id = ?", hold_id)
        return hold_of(row) if row else None

    async def locked(self, hold_id: str) -> Hold | None:
        """The hold, locked until the unit ends (SQLite: the unit holds the write lock already)."""
        lock = row_lock(self._tx)
        row = await self._tx.fetchone(f"SELECT {HOLD_COLUMNS} FROM holds WHERE hold_id = ?{lock}", hold_id)
        return hold_of(row) if row else None

    async def stored(self, hold_id: str) -> Hold:
        return stored(await self.get(hold_id), hold_id)

    async def add(self, hold: Hold) -> None:
        placed_at = hold.placed_at.isoformat() if hold.placed_at else ""
        await self._tx.execute(
            f"INSERT INTO holds ({HOLD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            hold.hold_id,
            hold.debit_account_id,
            hold.credit_account_id,
            hold.amount.minor,
            hold.amount.currency,
            hold.status.value,
            hold.description,
            hold.captured.minor if hold.captured else None,
            hold.transfer_id or None,
            hold.owner_context,
            hold.placed_by,
            placed_at,
            *remittance_row(hold.remittance),
        )

    async def resolve(self, resolved: Hold) -> None:
        """Saves the hold's one resolution (captured or released), over the PLACED it was."""
        changed = await self._tx.execute(
            "UPDATE holds SET status = ?, captured_minor = ?, transfer_id = ? WHERE hold_id = ? AND status = ?",
            resolved.status.value,
            resolved.captured.minor if resolved.captured else None,
            resolved.transfer_id or None,
            resolved.hold_id,
            HoldStatus.PLACED.value,
        )
        if changed != 1:
            raise Aborted("CONCURRENT_MOVEMENT", "the hold changed under its lock", {"hold_id": resolved.hold_id})

    async def page(self, account_id: str, after: int, limit: int) -> Page[Hold, int]:
        return await keyset_page(
            self._tx, f"SELECT seq, {HOLD_COLUMNS} FROM holds", "debit_account_id = ?", [account_id], after, limit, hold_of
        )
