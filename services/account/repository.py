"""The ledger in SQL, written once for SQLite and PostgreSQL: the account context's unit of work.

A use case holds the unit (`AccountUnit`): it locks the rows a movement decides on through the
repositories below, the domain decides on them, and the repositories save the result. Every
movement commits whole (the idempotency key, both balances, the transfer, its two entries and
its event) or not at all. Accounts and transfers are in postings.py, holds in holds.py, charges
in charges.py, the reads of statements and the trial balance in statements.py, and the
set-based postings in bulk_postings.py (interest) and bulk_fees.py (fees).
"""

from __future__ import annotations

from datetime import date, datetime

from common.db.base import Tx
from common.db.databases import ContextDatabase
from common.db.units import Unit, Units
from common.di import BaseComponent, og_component
from kernel.interest import InterestTier
from services.account import bulk_fees, bulk_postings
from services.account.bulk_fees import FeeChunk
from services.account.bulk_postings import AccrualChunk
from services.account.charges import Charges
from services.account.holds import Holds
from services.account.messages import OUTGOING
from services.account.postings import Accounts, Transfers
from services.account.statements import Statements


class Batches:
    """The set-based postings of one transaction: a chunk of accounts in a fixed number of
    statements, recorded so that a chunk asked for again answers from its record."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def accrue_interest(
        self, business_date: str, currency: str, tiers: tuple[InterestTier, ...], after: str, limit: int, at: datetime
    ) -> AccrualChunk:
        return await bulk_postings.accrue_interest(self._tx, business_date, currency, tiers, after, limit, at)

    async def charge_fees(self, first_day: date, currency: str, after: str, limit: int, at: datetime) -> FeeChunk:
        return await bulk_fees.charge_fees(self._tx, first_day, currency, after, limit, at)


class AccountUnit(Unit):
    """One transaction of the account context."""

    outgoing = OUTGOING

    def __init__(self, tx: Tx) -> None:
        super().__init__(tx)
        self.accounts = Accounts(tx)
        self.transfers = Transfers(tx)
        self.holds = Holds(tx)
        self.charges = Charges(tx)
        self.batches = Batches(tx)
        self.statements = Statements(tx)


@og_component()
class AccountUnits(BaseComponent, Units[AccountUnit]):
    """The account context's units of work, on its own database (SQLite file or PostgreSQL schema)."""

    def __init__(self, db: ContextDatabase) -> None:
        Units.__init__(self, db, AccountUnit)
