"""The daily interest run: a restartable batch that asks the account context to post interest a
chunk of accounts at a time (set-based there), never one call per account."""

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
from common.events.outbox import OutboxRelay, append_event
from common.money import Money
from common.pagination import PageTokens
from common.security.context import ADMIN
from common.security.policy import require_role
from common.validation import Violations
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1.account_service_pb2_grpc import AccountServiceStub
from ogpgy.interest.v1 import events_pb2
from ogpgy.type.v1 import date_pb2, money_pb2
from services.interest.domain import JOB, Tier, business_date

TIERS_FILE = Path(__file__).parent / "tiers.toml"


@og_component()
class InterestService(BaseComponent):
    def __init__(
        self,
        accounts: AccountServiceStub,
        batches: BatchRunner,
        settings: Settings,
        relay: OutboxRelay,
        pages: PageTokens,
        clock: Clock,
    ) -> None:
        self._pages = pages
        self._clock = clock
        self._accounts = accounts
        self._batches = batches
        self._chunk = settings.interest_chunk_size
        self._relay = relay
        self.currency = "EUR"
        self._tiers: list[Tier] = []

    async def initialize(self) -> None:
        config = tomllib.loads(TIERS_FILE.read_text(encoding="utf-8"))
        self.currency = str(config["currency"])
        self._tiers = [Tier(t.get("up_to"), t["annual_rate"]) for t in config["tiers"]]

    def _tiers_pb(self) -> list[apb.InterestTier]:
        return [
            apb.InterestTier(
                up_to=money_pb2.Money(currency_code=self.currency, amount=t.up_to) if t.up_to else None, annual_rate=t.annual_rate
            )
            for t in self._tiers
        ]

    async def run(self, day: date) -> AsyncIterator[BatchProgress]:
        """Runs or resumes the accrual of `day` (not a day ahead); a completed day is refused."""
        v = Violations()
        business_date(v, day, self._clock.today())
        v.raise_if_any()
        require_role(ADMIN, action="run the daily interest")
        year, month, dom = day.year, day.month, day.day
        tiers = self._tiers_pb()

        async def chunk(cursor: str) -> ChunkResult:
            answer = await self._accounts.AccrueInterest(
                apb.AccrueInterestRequest(
                    request_id=f"interest-{day.isoformat()}-{cursor or 'start'}"[:64].replace("_", "-"),
                    business_date=date_pb2.Date(year=year, month=month, day=dom),
                    currency_code=self.currency,
                    tiers=tiers,
                    after_account_id=cursor,
                    limit=self._chunk,
                ),
                timeout=120,
            )
            posted = Money.parse(self.currency, answer.interest_posted.amount)
            return ChunkResult(
                answer.processed, posted.minor, answer.last_account_id, answer.done, answer.eligible if not cursor else None
            )

        async def announce(tx: Tx, done: BatchProgress) -> None:
            total = Money(self.currency, done.amount_minor)
            await append_event(
                tx,
                events_pb2.InterestPosted(
                    business_date=date_pb2.Date(year=year, month=month, day=dom),
                    accounts=done.processed,
                    total_interest=money_pb2.Money(currency_code=total.currency, amount=total.amount),
                ),
            )

        async for progress in self._batches.run(
            JOB, day.isoformat(), chunk, announce, already_completed="INTEREST_RUN_ALREADY_COMPLETED"
        ):
            yield progress
        self._relay.nudge()

    async def get(self, day: str) -> BatchProgress | None:
        require_role(ADMIN, action="read interest runs")
        return await self._batches.get(JOB, day)

    async def runs(self, size: int, token: str) -> tuple[list[BatchProgress], str]:
        """Newest business date first; the token holds the last date shown (a text key: the dates
        of two runs never compare as numbers)."""
        v = Violations()
        request = self._pages.request(v, size, token, ("interest-runs",))
        v.raise_if_any()
        require_role(ADMIN, action="read interest runs")
        runs = await self._batches.page(JOB, request.after_key, request.limit + 1)
        more = len(runs) > request.limit
        runs = runs[: request.limit]
        return runs, request.next_token(runs[-1].run_key if more else None)
