"""The close of business on the bank's own schedule: once the bank's local time passes
`close_of_business_at`, the dates due of every currency with a calendar are closed, as
CloseBusinessDay closes them, without anyone asking.

Why this shape:
- One replica drives it (the holder of the "close-of-business" lease): a second would only wait
  on the first one's runs, but a bank wants one place to look for who closed its day.
- Nobody's token is behind a scheduled close, so it acts as the interest context on its own
  (`on_its_own`): the use case, and the contexts it calls, accept it beside admins (BANKS_DAY), the
  CloseBusinessDay RPC stays admins' (its gate), and the audit trail says "svc:interest".
- Its request id is derived from the date it closes through: a rerun, a replica taking the lease
  over or a pass cut short replays the same request and doubles nothing; a date closed by an admin
  or the CronJob meanwhile is simply no longer due.
"""

from __future__ import annotations

import hashlib
from datetime import date

from common.background import Background, every
from common.batch.runner import COMPLETED
from common.config import Settings
from common.db.databases import ContextDatabase
from common.di import BaseComponent, og_component
from common.idempotency import IdempotencyKey
from common.security.context import current_caller, on_its_own
from kernel.interest import BANKS_DAY
from services.interest.domain import BusinessCalendar
from services.interest.service import InterestUseCases

LEASE = "close-of-business"
OPERATION = "CloseBusinessDay"


def scheduled_request_id(currency: str, through: date) -> str:
    """The scheduled close's request id: the same for every replica and every pass that closes
    `currency` through `through`."""
    return f"cob-scheduled-{currency}-{through.isoformat()}"


@og_component()
class CloseOfBusinessScheduler(BaseComponent):
    """Closes the business dates due, every `close_of_business_poll_seconds`, while this process
    holds the lease; off with `close_of_business_scheduler = false` (the Kubernetes rendering's
    CronJob runs `ogpgy cob run` instead)."""

    def __init__(self, days: InterestUseCases, settings: Settings, database: ContextDatabase) -> None:
        self._days = days
        self._on = settings.close_of_business_scheduler
        self._instance = settings.instance_name
        self._currencies = sorted(settings.business_calendars)
        self.closed: list[tuple[str, date]] = []  # what this process's scheduler closed, oldest first
        self._loop = Background(
            "close-of-business-scheduler",
            self.close_due,
            every(settings.close_of_business_poll_seconds),
            self.logger,
            lead=lambda: database.lead(LEASE),
        )

    async def start(self) -> None:
        if self._on:
            self._loop.start()

    async def shutdown(self) -> None:
        await self._loop.stop()

    async def close_due(self) -> list[tuple[str, date]]:
        """One pass: every currency's dates due, closed in order; a currency that fails leaves
        the others to close (its failure is raised after them, for the loop to log and retry)."""
        closed: list[tuple[str, date]] = []
        failure: Exception | None = None
        with on_its_own(BANKS_DAY):
            for currency in self._currencies:
                calendar = self._days.calendar(currency)
                if calendar is None:
                    continue
                try:
                    closed += [(currency, day) for day in await self._close(calendar)]
                except Exception as exc:  # noqa: BLE001 - one currency's failure must not stop the others' close
                    self.logger.warning("close of business of %s failed: %r", currency, exc)
                    failure = failure or exc
        if failure is not None:
            raise failure
        return closed

    async def _close(self, calendar: BusinessCalendar) -> list[date]:
        day = await self._days.business_day(calendar)
        if not day.missed:
            return []
        currency, through = calendar.currency, day.through
        digest = hashlib.sha256(f"{currency}:{through.isoformat()}".encode()).hexdigest()
        key = IdempotencyKey(scheduled_request_id(currency, through), OPERATION, digest, current_caller().principal)
        done: list[date] = []
        async for progress in self._days.close(calendar, key):
            if progress.run.status == COMPLETED and progress.plan.day in day.missed and progress.plan.day not in done:
                done.append(progress.plan.day)
                self.closed.append((currency, progress.plan.day))
                self.logger.info("%s: closed %s %s on schedule", self._instance, currency, progress.plan.day)
        return done
