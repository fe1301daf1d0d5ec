"""gRPC servicer of the interest context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

from google.protobuf import duration_pb2
from grpc import aio

from common.batch.runner import COMPLETED, BatchProgress
from common.di import og_component
from common.errors import NotFound
from common.grpc.convert import calendar_date, timestamp
from common.money import Money
from common.validation import Violations
from ogpgy.interest.v1 import interest_service_pb2 as pb
from ogpgy.interest.v1 import interest_service_pb2_grpc as pb_grpc
from ogpgy.type.v1 import date_pb2, money_pb2
from services.interest.domain import business_date
from services.interest.service import InterestService


def run_pb(p: BatchProgress, currency: str) -> pb.InterestRun:
    year, month, day = (int(x) for x in p.run_key.split("-"))
    total = Money(currency, p.amount_minor)
    return pb.InterestRun(
        business_date=date_pb2.Date(year=year, month=month, day=day),
        status=pb.INTEREST_RUN_STATUS_COMPLETED if p.status == COMPLETED else pb.INTEREST_RUN_STATUS_RUNNING,
        processed=p.processed,
        errors=p.errors,
        total=p.total,
        total_interest=money_pb2.Money(currency_code=currency, amount=total.amount),
        duration=duration_pb2.Duration(seconds=p.elapsed_ms // 1000, nanos=p.elapsed_ms % 1000 * 1_000_000),
        start_time=timestamp(p.started_at),
    )


def _day(request: pb.RunDailyInterestRequest | pb.GetInterestRunRequest) -> date:
    v = Violations()
    d = request.business_date
    day = calendar_date(d.year, d.month, d.day)
    business_date(v, day)
    return v.valid(day)


@og_component()
class InterestApi(pb_grpc.InterestServiceServicer):
    """ogpgy.interest.v1.InterestService."""

    def __init__(self, service: InterestService) -> None:
        self._service = service

    async def RunDailyInterest(
        self, request: pb.RunDailyInterestRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.RunDailyInterestResponse]:
        day = _day(request)
        async for progress in self._service.run(day):
            yield pb.RunDailyInterestResponse(run=run_pb(progress, self._service.currency))

    async def GetInterestRun(self, request: pb.GetInterestRunRequest, context: aio.ServicerContext) -> pb.GetInterestRunResponse:
        day = _day(request).isoformat()
        progress = await self._service.get(day)
        if progress is None:
            raise NotFound("interest run", day)
        return pb.GetInterestRunResponse(run=run_pb(progress, self._service.currency))

    async def ListInterestRuns(
        self, request: pb.ListInterestRunsRequest, context: aio.ServicerContext
    ) -> pb.ListInterestRunsResponse:
        runs, token = await self._service.runs(request.page_size, request.page_token)
        return pb.ListInterestRunsResponse(runs=[run_pb(r, self._service.currency) for r in runs], next_page_token=token)
