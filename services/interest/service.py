"""The daily interest run: a restartable batch that asks the ledger to post interest a chunk of
accounts at a time (set-based there), never one call per account. Input arrives validated
(api.py); each use case authorizes first."""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from common.batch.runner import COMPLETED, RUN_IN_PROGRESS, RUNNING, BatchProgress, BatchRunner, ChunkResult
from common.clock import Clock
from common.config import Settings
from common.db.base import Tx
from common.di import BaseComponent, og_component
from common.errors import PreconditionFailed
from common.idempotency import IdempotencyKey
from common.money import Money
from common.observability.metrics import BUSINESS_DATES_DUE, CLOSE_OF_BUSINESS_SUCCEEDED
from common.pagination import PageRequest
from common.security.context import ADMIN
from common.security.policy import require_role
from common.validation import Violations
from kernel.interest import BANKS_DAY, InterestTier
from services.interest.domain import (
    CLOSE_JOB,
    COLLECTION,
    FEES,
    INTEREST,
    JOB,
    BusinessCalendar,
    ClosePlan,
    InterestPosted,
    business_calendar,
    business_date,
    chunk_request_id,
    close_plan,
    closing_through,
    configured_tier,
    due_dates,
    next_step,
)
from services.interest.ports import Announcements, Collections, Fees, Ledger

TIERS_FILE = Path(__file__).parent / "tiers.toml"
ALREADY_CLOSED = "BUSINESS_DATE_ALREADY_CLOSED"
_WAIT_FOR_CLOSE_SECONDS = 300.0  # a date's close run by another request, waited for
_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class CloseProgress:
    """A business date's close as it stands: its plan and its run (the cursor: the last step done)."""

    plan: ClosePlan
    currency: str
    run: BatchProgress


@dataclass(frozen=True)
class BusinessDay:
    """A currency's day as the close of business sees it."""

    last_closed: date | None
    in_progress: CloseProgress | None
    missed: list[date]
    through: date
    time_zone: str


def close_job(currency: str) -> str:
    return f"{CLOSE_JOB}-{currency}"


@og_component()
class InterestUseCases(BaseComponent):
    def __init__(
        self,
        ledger: Ledger,
        announcements: Announcements,
        batches: BatchRunner,
        settings: Settings,
        clock: Clock,
        fees: Fees,
        collections: Collections,
    ) -> None:
        self._ledger = ledger
        self._fees = fees
        self._collections = collections
        self._settings = settings
        self._zone = ZoneInfo(settings.bank_time_zone)
        self._calendars: dict[str, BusinessCalendar] = {}
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
        require_role(ADMIN, action="run the daily interest", or_started_by=BANKS_DAY)
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

    # --- the close of business ---------------------------------------------------------------

    def calendar(self, currency: str) -> BusinessCalendar | None:
        """The currency's business calendar, None for a currency without one (api.py refuses it)."""
        market = self._settings.business_calendars.get(currency)
        if market is None:
            return None
        if currency not in self._calendars:
            self._calendars[currency] = business_calendar(currency, market)
        return self._calendars[currency]

    async def _state(self, calendar: BusinessCalendar) -> tuple[date | None, CloseProgress | None]:
        """The last date closed and the close in progress: dates close in order, so the newest run
        is the one in progress if any, and the one before it completed."""
        runs = (await self._batches.page(close_job(calendar.currency), "", 2)).items
        running = runs[0] if runs and runs[0].status == RUNNING else None
        closed = [r for r in runs if r.status != RUNNING]
        last = date.fromisoformat(closed[0].run_key) if closed else None
        if running is None:
            return last, None
        return last, CloseProgress(close_plan(calendar, date.fromisoformat(running.run_key)), calendar.currency, running)

    async def business_day(self, calendar: BusinessCalendar) -> BusinessDay:
        require_role(ADMIN, action="read the business day", or_started_by=BANKS_DAY)
        return await self._business_day(calendar)

    async def _business_day(self, calendar: BusinessCalendar) -> BusinessDay:
        """The day as it stands, the dates due counted for operators (ogpgy_business_dates_due)."""
        through = closing_through(self._clock.now(), self._zone, self._settings.close_of_business_at)
        last, running = await self._state(calendar)
        due = due_dates(calendar, last, running.plan.day if running else None, through, self._settings.first_business_date)
        BUSINESS_DATES_DUE.labels(calendar.currency).set(len(due))
        return BusinessDay(last, running, due, through, self._settings.bank_time_zone)

    async def close(self, calendar: BusinessCalendar, key: IdempotencyKey) -> AsyncIterator[CloseProgress]:
        """Closes every business date due, in order, each once the one before completed; a replay
        of `key` closes through the date its first asking did."""
        require_role(ADMIN, action="close the business day", or_started_by=BANKS_DAY)
        currency = calendar.currency
        now = closing_through(self._clock.now(), self._zone, self._settings.close_of_business_at)
        through = date.fromisoformat(await self._batches.claim(key, now.isoformat()))
        last, running = await self._state(calendar)
        due = due_dates(calendar, last, running.plan.day if running else None, through, self._settings.first_business_date)
        if not due and last is not None:
            closed = await self._batches.get(close_job(currency), last.isoformat())
            if closed is not None:
                yield CloseProgress(close_plan(calendar, last), currency, closed)
        try:
            async for progress in self._close_all(calendar, due, key):
                yield progress
        except Exception:
            with suppress(Exception):  # the dates left due, for the missed-date alarm; the failure is the answer
                await self._business_day(calendar)
            raise
        await self._business_day(calendar)
        CLOSE_OF_BUSINESS_SUCCEEDED.labels(currency).set(self._clock.now().timestamp())

    async def _close_all(self, calendar: BusinessCalendar, due: list[date], key: IdempotencyKey) -> AsyncIterator[CloseProgress]:
        """Each date in order; the next one starts only once this one completed. Each date's run
        is the request's own (a key derived from it per date): an identical request arriving while
        it runs waits for it and answers as it, instead of hearing RUN_IN_PROGRESS."""
        currency = calendar.currency
        for day in due:
            plan = close_plan(calendar, day)

            async def chunk(cursor: str, plan: ClosePlan = plan) -> ChunkResult:
                step = next_step(plan, cursor)
                assert step is not None  # a run whose last step is done is COMPLETED
                await self._step(step, plan, currency)
                return ChunkResult(1, 0, step, next_step(plan, step) is None, len(plan.steps))

            own = replace(key, request_id=f"{key.request_id}/{day.isoformat()}", operation=f"{key.operation}.date")
            try:
                async for progress in self._batches.run(
                    close_job(currency), day.isoformat(), chunk, already_completed=ALREADY_CLOSED, request=own
                ):
                    yield CloseProgress(plan, currency, progress)
            except PreconditionFailed as refused:
                # another request closes (or closed) this date: once it is closed, that is this
                # request's answer too, so identical twins racing a third request hear the same
                if refused.reason not in (ALREADY_CLOSED, RUN_IN_PROGRESS):
                    raise
                closed = await self._closed(currency, day)
                if closed is None:
                    raise
                yield CloseProgress(plan, currency, closed)

    async def _closed(self, currency: str, day: date) -> BatchProgress | None:
        """The date's completed run, waited for while another request drives it (bounded: a close
        that does not end in time leaves the refusal as the answer)."""
        deadline = time.monotonic() + _WAIT_FOR_CLOSE_SECONDS
        while True:
            run = await self._batches.get(close_job(currency), day.isoformat())
            if run is not None and run.status == COMPLETED:
                return run
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(_POLL_SECONDS)

    async def _step(self, step: str, plan: ClosePlan, currency: str) -> None:
        """One step of a date's close, to its end; each is idempotent, so a close cut short runs
        the step it was in again."""
        if step == INTEREST and currency == self.currency:  # interest is configured for one currency
            for day in plan.interest_days:
                try:
                    async for _ in self.run(day):
                        pass
                except PreconditionFailed as refused:
                    if refused.reason != "INTEREST_RUN_ALREADY_COMPLETED":
                        raise
        elif step == FEES:
            for month in plan.fee_months:
                after, done = "", False
                while not done:
                    request_id = f"cob-fees-{currency}-{month:%Y%m}-{self._chunk}-{after or 'start'}"[:64].replace("_", "-")
                    charged = await self._fees.charge(request_id, month, currency, after, self._chunk)
                    after, done = charged.last_account_id, charged.done
        elif step == COLLECTION:
            await self._collections.collect(f"cob-collect-{currency}-{plan.day.isoformat()}", plan.day, currency)
