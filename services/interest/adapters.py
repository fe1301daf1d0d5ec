"""The interest context's side of its contracts: the account context behind the Ledger port, and
its events as the messages it publishes."""

from __future__ import annotations

from datetime import date

import grpc

from common.db.base import Tx
from common.di import BaseComponent, og_component
from common.grpc.remote import app_error, call
from common.money import Money
from kernel.convert import date_pb, money_of, money_pb
from kernel.interest import InterestTier
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1.account_service_pb2_grpc import AccountServiceStub
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1.lending_service_pb2_grpc import LendingServiceStub
from services.interest.domain import InterestPosted
from services.interest.messages import OUTGOING
from services.interest.ports import AccruedChunk, Announcements, Collections, Fees, FeesChunk, Ledger

CHUNK_CALL_TIMEOUT = 120.0  # a chunk is thousands of accounts, posted set-based in one transaction


@og_component()
class AccountLedger(BaseComponent, Ledger):
    """The ledger, as the account context's AccrueInterest answers (with the caller's authority)."""

    def __init__(self, accounts: AccountServiceStub) -> None:
        self._accounts = accounts

    async def accrue(
        self, request_id: str, day: date, currency: str, tiers: tuple[InterestTier, ...], after_account_id: str, limit: int
    ) -> AccruedChunk:
        answer = await call(
            self._accounts.AccrueInterest,
            apb.AccrueInterestRequest(
                request_id=request_id,
                business_date=date_pb(day),
                currency_code=currency,
                tiers=[_tier(t, currency) for t in tiers],
                after_account_id=after_account_id,
                limit=limit,
            ),
            within=CHUNK_CALL_TIMEOUT,
            unavailable="ACCOUNTS_UNAVAILABLE",
            silence="the account context did not answer",
        )
        eligible = answer.eligible if not after_account_id else None
        return AccruedChunk(answer.processed, money_of(answer.interest_posted), answer.last_account_id, answer.done, eligible)


def _tier(tier: InterestTier, currency: str) -> apb.InterestTier:
    up_to = money_pb(Money(currency, tier.up_to_minor)) if tier.up_to_minor is not None else None
    return apb.InterestTier(up_to=up_to, annual_rate=format(tier.annual_rate, "f"))


@og_component()
class OutboxAnnouncements(BaseComponent, Announcements):
    """The context's events, as its Outgoing publishes them through the outbox."""

    async def interest_posted(self, tx: Tx, event: InterestPosted) -> None:
        await OUTGOING.append(tx, [event])


@og_component()
class AccountFees(BaseComponent, Fees):
    """The month's fees, as the account context's ChargeMonthlyFees answers (the caller's authority)."""

    def __init__(self, accounts: AccountServiceStub) -> None:
        self._accounts = accounts

    async def charge(self, request_id: str, month: date, currency: str, after_account_id: str, limit: int) -> FeesChunk:
        answer = await call(
            self._accounts.ChargeMonthlyFees,
            apb.ChargeMonthlyFeesRequest(
                request_id=request_id,
                month=date_pb(month),
                currency_code=currency,
                after_account_id=after_account_id,
                limit=limit,
            ),
            within=CHUNK_CALL_TIMEOUT,
            unavailable="ACCOUNTS_UNAVAILABLE",
            silence="the account context did not answer",
        )
        return FeesChunk(answer.processed, answer.last_account_id, answer.done)


COLLECTION_TIMEOUT = 3600.0  # the whole day's collection, streamed chunk by chunk


@og_component()
class LendingCollections(BaseComponent, Collections):
    """The day's collection, as the lending context's RunCollection streams it (the caller's authority)."""

    def __init__(self, lending: LendingServiceStub) -> None:
        self._lending = lending

    async def collect(self, request_id: str, day: date, currency: str) -> None:
        request = lpb.RunCollectionRequest(request_id=request_id, business_date=date_pb(day), currency_code=currency)
        try:
            async for _ in self._lending.RunCollection(request, timeout=COLLECTION_TIMEOUT):
                pass
        except grpc.aio.AioRpcError as err:
            refused = app_error(err, "LENDING_UNAVAILABLE", "the lending context did not answer")
            if getattr(refused, "reason", "") != "COLLECTION_RUN_ALREADY_COMPLETED":
                raise refused from err
