"""The daily interest run: a restartable batch that asks the ledger to post interest a chunk of
accounts at a time (set-based there), never one call per account. Input arrives validated
(api.py); each use case authorizes first."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

from common.batch.runner import BatchProgress, BatchRunner, ChunkResult
from common.clock import Clock
from common.config import Settings
from common.db.base import Tx
from common.di import BaseComponent, og_component
from common.idempotency import IdempotencyKey
from common.money import Money
from common.pagination import PageRequest
from common.security.context import ADMIN
from common.security.policy import require_role
from common.validation import Violations
from kernel.interest import InterestTier
from services.interest.domain import JOB, InterestPosted, business_date, chunk_request_id, configured_tier
from services.interest.ports import Announcements, Ledger

TIERS_FILE = Path(__file__).parent / "tiers.toml"


@og_component()
class InterestUseCases(BaseComponent):
    def __init__(
        self, ledger: Ledger, announcements: Announcements, batches: BatchRunner, settings: Settings, clock: Clock
    ) -> None:
        self._ledger = ledger
        self._clock = clock
        self._announcements = announcements
        self._batches = batches
        self._chunk = settings.interest_chunk_size
        self.currency = "EUR"
        self._tiers: tuple[InterestTier, ...] = ()

    async def initialize(self) -> None:
        config = tomllib.loads(TIERS_FILE.read_text(encoding="utf-8"))
        self.currency = str(config["currency"])
        self._tiers = tuple(configured_tier(self.currency, t.get("up_to"), t["annual_rate"]) for t in config["tiers"])

    async def run(self, day: date, key: IdempotencyKey | None = None) -> AsyncIterator[BatchProgress]:
        """Runs or resumes the accrual of `day`, a day that has begun; a completed day is refused
        (but to a replay of the request `key` that ran it)."""
        require_role(ADMIN, action="run the daily interest")
        v = Violations()
        business_date(v, day, self._clock.today())
        v.raise_if_any()

        async def chunk(cursor: str) -> ChunkResult:
            request_id = chunk_request_id(day, self.currency, self._tiers, self._chunk, cursor)
            done = await self._ledger.accrue(request_id, day, self.currency, self._tiers, cursor, self._chunk)
            return ChunkResult(done.processed, done.posted.minor, done.last_account_id, done.done, done.eligible)

        async def announce(tx: Tx, done: BatchProgress) -> None:
            await self._announcements.interest_posted(
                tx, InterestPosted(day, done.processed, Money(self.currency, done.amount_minor))
            )

        async for progress in self._batches.run(
            JOB, day.isoformat(), chunk, announce, already_completed="INTEREST_RUN_ALREADY_COMPLETED", request=key
        ):
            yield progress

    async def get(self, day: str) -> BatchProgress | None:
        require_role(ADMIN, action="read interest runs")
        return await self._batches.get(JOB, day)

    async def runs(self, request: PageRequest) -> tuple[list[BatchProgress], str]:
        """Newest business date first; the token holds the last date shown (a text key: the dates
        of two runs never compare as numbers)."""
        require_role(ADMIN, action="read interest runs")
        page = await self._batches.page(JOB, request.after_key, request.limit)
        return page.items, request.next_token(page.next_after)
