"""A bounded mixed load on the bank (payments internal and external, onboarding, loans and their
repayments, reads, interest and collection runs), shared by the fault suite and the soak:
outcomes by status code, latencies."""

from __future__ import annotations

import asyncio
import collections
import random
import time
from datetime import UTC, datetime, timedelta

import grpc
from grpc import aio

from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.interest.v1 import interest_service_pb2 as ipb
from ogpgy.interest.v1 import interest_service_pb2_grpc as igrpc
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from ogpgy.type.v1 import date_pb2
from tests.bank_helpers import eur
from tests.integration.test_mesh_modes import mesh_bank

CALL_TIMEOUT = 8.0


class Load:
    """Mixed work from several workers until told to stop; outcomes counted by status code."""

    def __init__(self, ch: dict[str, aio.Channel], accounts: list[tuple[str, str]]) -> None:
        self.bank = mesh_bank(ch)
        self.payments = pgrpc.PaymentServiceStub(ch["payment"])
        self.loans = lgrpc.LendingServiceStub(ch["lending"])
        self.interest = igrpc.InterestServiceStub(ch["interest"])
        self.accounts = accounts  # (customer, account)
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.dates: list[date_pb2.Date] = []
        self.collections: list[date_pb2.Date] = []
        self.disbursed: list[str] = []  # loans to repay
        self.stop = asyncio.Event()
        self.rng = random.Random(17)
        self.latencies: list[tuple[float, str, float]] = []  # (when, kind, ms) of successful operations
        self.bugs: list[str] = []
        self.seq = 0

    def _key(self, kind: str) -> str:
        self.seq += 1
        return f"{kind}-{self.seq}"

    async def _one(self) -> str:
        (customer, debtor), (_, creditor) = self.rng.sample(self.accounts, 2)
        kind = self.rng.choice(["internal", "internal", "external", "onboard", "loan", "repay", "read", "interest", "collection"])
        if kind == "internal":
            await self.payments.CreatePayment(
                ppb.CreatePaymentRequest(
                    request_id=self._key("pay"),
                    debtor_account_id=debtor,
                    internal=ppb.InternalBeneficiary(account_id=creditor),
                    amount=eur("1.00"),
                ),
                timeout=CALL_TIMEOUT,
            )
        elif kind == "external":
            await self.payments.CreatePayment(
                ppb.CreatePaymentRequest(
                    request_id=self._key("ext"),
                    debtor_account_id=debtor,
                    external=ppb.ExternalBeneficiary(iban="DE89370400440532013000", name="Max Muster"),
                    amount=eur("1.00"),
                ),
                timeout=CALL_TIMEOUT,
            )
        elif kind == "onboard":
            await self.bank.verified_customer(self._key("onboard"))
        elif kind == "loan":
            key = self._key("loan")
            applied = await self.loans.ApplyForLoan(
                lpb.ApplyForLoanRequest(
                    request_id=f"{key}-a", customer_id=customer, account_id=debtor, principal=eur("100.00"), term_months=12
                ),
                timeout=CALL_TIMEOUT,
            )
            await self.loans.ApproveLoan(
                lpb.ApproveLoanRequest(request_id=f"{key}-b", loan_id=applied.loan.loan_id, annual_interest_rate="0.05"),
                timeout=CALL_TIMEOUT,
            )
            disbursed = await self.loans.DisburseLoan(
                lpb.DisburseLoanRequest(request_id=f"{key}-c", loan_id=applied.loan.loan_id), timeout=CALL_TIMEOUT
            )
            if disbursed.loan.status == lpb.LOAN_STATUS_DISBURSED:
                self.disbursed.append(applied.loan.loan_id)
        elif kind == "repay":
            if not self.disbursed:
                return kind
            loan_id = self.rng.choice(self.disbursed)
            request = lpb.RepayLoanRequest(request_id=self._key("repay"), loan_id=loan_id, amount=eur("3.00"))
            await self.loans.RepayLoan(request, timeout=CALL_TIMEOUT)
        elif kind == "collection":
            await self._collection()
        elif kind == "read":
            await self.bank.customers.GetCustomer(cpb.GetCustomerRequest(customer_id=customer), timeout=CALL_TIMEOUT)
        else:
            if len(self.dates) >= 5:
                kind = "interest read"
                await self.interest.ListInterestRuns(ipb.ListInterestRunsRequest(page_size=10), timeout=CALL_TIMEOUT)
            else:
                run = datetime.now(UTC).date() - timedelta(days=len(self.dates))  # a day accrues once it has begun
                day = date_pb2.Date(year=run.year, month=run.month, day=run.day)
                self.dates.append(day)
                async for _ in self.interest.RunDailyInterest(
                    ipb.RunDailyInterestRequest(request_id=self._key("int"), business_date=day), timeout=CALL_TIMEOUT * 3
                ):
                    pass
        self.outcomes[f"{kind} OK"] += 1
        return kind

    async def _collection(self) -> None:
        """Today's collection (nothing is due yet on loans lent today: the run examines them all),
        at most once a day; a run cut short by a fault is resumed by the next one asked for."""
        today = datetime.now(UTC).date()
        day = date_pb2.Date(year=today.year, month=today.month, day=today.day)
        if day not in self.collections:
            self.collections.append(day)
        request = lpb.RunCollectionRequest(request_id=self._key("col"), business_date=day, currency_code="EUR")
        try:
            async for _ in self.loans.RunCollection(request, timeout=CALL_TIMEOUT * 3):
                pass
        except aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.FAILED_PRECONDITION:  # RUN_ALREADY_COMPLETED: done before
                raise

    async def worker(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                kind = await self._one()
                self.latencies.append((time.monotonic(), kind, (time.perf_counter() - started) * 1000))
            except aio.AioRpcError as error:
                self.outcomes[f"error {error.code().name}"] += 1
                if error.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                    self.bugs.append(f"{error.code().name}: {error.details()}")
                await asyncio.sleep(0.05)


async def setup_accounts(ch: dict[str, aio.Channel]) -> list[tuple[str, str]]:
    bank = mesh_bank(ch)
    accounts = []
    for i in range(6):
        customer = await bank.verified_customer(f"fault-{i}")
        account = (await bank.default_account(customer, within=30)).account_id
        await bank.deposit(account, "100000.00", f"fault-{i}")
        accounts.append((customer, account))
    return accounts
