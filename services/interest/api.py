"""gRPC servicer of the interest context: a request becomes validated domain values, an answer
becomes its message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

from grpc import aio

from common.batch.runner import COMPLETED, BatchProgress
from common.di import og_component
from common.errors import NotFound
from common.grpc.convert import idempotency_key, milliseconds, timestamp
from common.grpc.gates import gated
from common.money import Money
from common.pagination import PageTokens
from common.security.context import ADMIN
from common.validation import Violations
from kernel.convert import date_of, date_pb, money_pb
from ogpgy.interest.v1 import interest_service_pb2 as pb
from ogpgy.interest.v1 import interest_service_pb2_grpc as pb_grpc
from services.interest.domain import COLLECTION, FEES, INTEREST, BusinessCalendar, business_date
from services.interest.service import BusinessDay, CloseProgress, InterestUseCases

STEPS_PB = {INTEREST: pb.CLOSE_STEP_INTEREST, FEES: pb.CLOSE_STEP_FEES, COLLECTION: pb.CLOSE_STEP_COLLECTION}


def run_pb(p: BatchProgress, currency: str) -> pb.InterestRun:
    return pb.InterestRun(
        business_date=date_pb(date.fromisoformat(p.run_key)),
        status=pb.INTEREST_RUN_STATUS_COMPLETED if p.status == COMPLETED else pb.INTEREST_RUN_STATUS_RUNNING,
        processed=p.processed,
        errors=p.errors,
        total=p.total,
        total_interest=money_pb(Money(currency, p.amount_minor)),
        duration=milliseconds(p.elapsed_ms),
        start_time=timestamp(p.started_at),
    )


def close_pb(c: CloseProgress) -> pb.BusinessDayClose:
    return pb.BusinessDayClose(
        business_date=date_pb(c.plan.day),
        currency_code=c.currency,
        completed=c.run.status == COMPLETED,
        step_done=STEPS_PB.get(c.run.cursor, pb.CLOSE_STEP_UNSPECIFIED),
        steps=[STEPS_PB[s] for s in c.plan.steps],
        interest_days=[date_pb(d) for d in c.plan.interest_days],
        fee_months=[date_pb(m) for m in c.plan.fee_months],
        start_time=timestamp(c.run.started_at),
        duration=milliseconds(c.run.elapsed_ms),
    )


def day_pb(day: BusinessDay) -> pb.GetBusinessDayResponse:
    return pb.GetBusinessDayResponse(
        last_closed=date_pb(day.last_closed) if day.last_closed else None,
        in_progress=close_pb(day.in_progress) if day.in_progress else None,
        missed=[date_pb(d) for d in day.missed],
        closing_through=date_pb(day.through),
        time_zone=day.time_zone,
    )


def _day(request: pb.RunDailyInterestRequest | pb.GetInterestRunRequest) -> date:
    """The business date asked for (whether a run may be ahead of today is the use case's, once it
    knows the caller may run it)."""
    v = Violations()
    day = date_of(request.business_date)
    business_date(v, day)
    return v.valid(day)


@og_component()
class InterestApi(pb_grpc.InterestServiceServicer):
    """ogpgy.interest.v1.InterestService."""

    def __init__(self, service: InterestUseCases, pages: PageTokens) -> None:
        self._service = service
        self._pages = pages

    @gated(ADMIN, action="run the daily interest")
    async def RunDailyInterest(
        self, request: pb.RunDailyInterestRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.RunDailyInterestResponse]:
        day = _day(request)
        async for progress in self._service.run(day, idempotency_key(request, "RunDailyInterest")):
            yield pb.RunDailyInterestResponse(run=run_pb(progress, self._service.currency))

    @gated(ADMIN, action="read interest runs")
    async def GetInterestRun(self, request: pb.GetInterestRunRequest, context: aio.ServicerContext) -> pb.GetInterestRunResponse:
        day = _day(request).isoformat()
        progress = await self._service.get(day)
        if progress is None:
            raise NotFound("interest run", day)
        return pb.GetInterestRunResponse(run=run_pb(progress, self._service.currency))

    @gated(ADMIN, action="read interest runs")
    async def ListInterestRuns(
        self, request: pb.ListInterestRunsRequest, context: aio.ServicerContext
    ) -> pb.ListInterestRunsResponse:
        v = Violations()
        page = self._pages.request(v, request.page_size, request.page_token, ("interest-runs",))
        v.raise_if_any()
        runs, token = await self._service.runs(page)
        return pb.ListInterestRunsResponse(runs=[run_pb(r, self._service.currency) for r in runs], next_page_token=token)

    def _calendar(self, currency: str) -> BusinessCalendar:
        v = Violations()
        calendar = self._service.calendar(currency)
        v.check(
            calendar is not None, "currency_code", f"no business calendar for '{currency}' (business_calendars in the settings)"
        )
        v.raise_if_any()
        assert calendar is not None
        return calendar

    @gated(ADMIN, action="close the business day")
    async def CloseBusinessDay(
        self, request: pb.CloseBusinessDayRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.CloseBusinessDayResponse]:
        calendar = self._calendar(request.currency_code)
        async for progress in self._service.close(calendar, idempotency_key(request, "CloseBusinessDay")):
            yield pb.CloseBusinessDayResponse(close=close_pb(progress))

    @gated(ADMIN, action="read the business day")
    async def GetBusinessDay(self, request: pb.GetBusinessDayRequest, context: aio.ServicerContext) -> pb.GetBusinessDayResponse:
        return day_pb(await self._service.business_day(self._calendar(request.currency_code)))
