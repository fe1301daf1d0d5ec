"""Charges in SQL: what a posted charge order became (its transfers, one per line)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from common.db.base import Tx, stored
from common.money import Money
from services.account.domain import Charge


class Charges:
    """The charges of one transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def stored(self, charge_id: str) -> Charge:
        row = await self._tx.fetchone(
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

    async def add_many(self, charges: Sequence[Charge], at: datetime) -> None:
        await self._tx.executemany(
            "INSERT INTO charges (charge_id, request_id, account_id, total_minor, currency, transfer_ids, posted_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    c.charge_id,
                    c.request_id,
                    c.account_id,
                    c.total.minor,
                    c.total.currency,
                    ",".join(c.transfer_ids),
                    at.isoformat(),
                )
                for c in charges
            ],
        )
