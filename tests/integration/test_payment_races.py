"""Identical CreatePayment calls raced at once against a real embedded bank (internal payments, and
external ones through the VelocityPay simulator in its own process): every copy of one request_id
hears the same answer, the stored outcome, whichever copy moved the payment; none is ABORTED.

Seeded rounds, each with several request ids at once (random amounts, a random mix of internal and
external beneficiaries, the copies shuffled), on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc import aio

from common.config import Settings
from common.grpc.status import rich_status, unpack_detail
from mesh.embedded import RunningBank, start_embedded, start_process
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1 import account_service_pb2_grpc as agrpc
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from services.velocitypay.module import VelocityPayModule
from tests.bank_helpers import Bank, admin_channel, eur, generous_fraud_rules
from tests.conftest import ADMIN_PASSWORD
from tests.servers import PostgresServer

GOOD_IBAN = "DE89370400440532013000"
COPIES = 20  # identical calls per request id, raced at once
REQUESTS = 3  # request ids raced beside one another in a round
ROUNDS = 6
DEPOSIT = "5000.00"
T = TypeVar("T")


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[str]:
    """The simulator as the outside world: its own server and ledger (as in test_payments.py)."""
    settings = Settings(data_dir=tmp_path / "network", port=0, network_member_key_path=tmp_path / "velocitypay-member-key")
    running = await start_process(settings, [VelocityPayModule])
    yield running.target
    await running.stop(0)


@dataclass
class Racing:
    bank: RunningBank
    bank_channel: aio.Channel
    client: Bank
    payments: pgrpc.PaymentServiceStub
    debtors: list[str]
    payees: list[str]
    overdraft: dict[str, int]  # available minus balance, in cents, with no hold on the account


def _cents(amount: str) -> int:
    return round(float(amount) * 100)


@pytest.fixture(params=["sqlite", "postgres"])
async def racing(request: pytest.FixtureRequest, tmp_path: Path, network: str) -> AsyncIterator[Racing]:
    database: dict[str, object] = {}
    if request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres")
        database = {"database": "postgres", "postgres_dsn": server.new_database()}
    settings = Settings(
        data_dir=tmp_path,
        port=0,
        admin_password=ADMIN_PASSWORD,
        addresses={"velocitypay": network},
        fraud_rules_path=generous_fraud_rules(tmp_path),
    ).model_copy(update=database)
    bank = await start_embedded(settings)
    async with admin_channel(bank.target) as channel:
        client = Bank(channel)
        debtors, payees = [], []
        for i in range(2):
            debtors.append((await client.default_account(await client.verified_customer(f"race-d{i}"))).account_id)
            await client.deposit(debtors[-1], DEPOSIT, f"race-d{i}")
            payees.append((await client.default_account(await client.verified_customer(f"race-p{i}"))).account_id)
        overdraft = {}
        for debtor in debtors:
            balance, available = await client.balance(debtor)
            overdraft[debtor] = _cents(available) - _cents(balance)
        yield Racing(bank, channel, client, pgrpc.PaymentServiceStub(channel), debtors, payees, overdraft)
    await bank.stop(grace=1)


UNKNOWN_BANK_IBAN = "DE44999999990532013000"  # valid check digits, no such bank: the network refuses it
KINDS = {  # how a request is made, and how its payment ends
    "internal": ppb.PAYMENT_STATUS_COMPLETED,
    "external": ppb.PAYMENT_STATUS_COMPLETED,
    "unknown bank": ppb.PAYMENT_STATUS_FAILED,  # held, refused by the network, released
    "beyond funds": ppb.PAYMENT_STATUS_FAILED,  # the hold refused
}


def _requests(
    rng: random.Random, round_: int, debtors: list[str], payees: list[str]
) -> list[tuple[str, ppb.CreatePaymentRequest]]:
    """REQUESTS distinct payments of this round: random debtor, amount and kind."""
    made = []
    for n in range(REQUESTS):
        kind = rng.choices(list(KINDS), weights=[4, 4, 1, 1])[0]
        amount = "9000.00" if kind == "beyond funds" else f"{rng.randint(1, 5000) / 100:.2f}"
        request = ppb.CreatePaymentRequest(
            request_id=f"race-{round_}-{n}",
            debtor_account_id=rng.choice(debtors),
            amount=eur(amount),
            reference=f"race {round_}/{n}",
        )
        if kind in ("internal", "beyond funds"):
            request.internal.account_id = rng.choice(payees)
        else:
            request.external.iban = GOOD_IBAN if kind == "external" else UNKNOWN_BANK_IBAN
            request.external.name = "Max Muster"
        made.append((kind, request))
    return made


async def _answer(payments: pgrpc.PaymentServiceStub, request: ppb.CreatePaymentRequest) -> tuple[str, str, bytes]:
    """What a copy heard: OK and the payment (serialized, deterministically), or its status and reason."""
    try:
        response = await payments.CreatePayment(request)
    except aio.AioRpcError as refused:
        status = rich_status(refused)
        info = unpack_detail(status, error_details_pb2.ErrorInfo) if status else None
        reason = info.reason if isinstance(info, error_details_pb2.ErrorInfo) else refused.details()
        return request.request_id, f"{refused.code().name}:{reason}", b""
    return request.request_id, "OK", response.payment.SerializeToString(deterministic=True)


async def test_identical_payments_raced_at_once_all_hear_the_stored_outcome(racing: Racing) -> None:
    diverged: list[str] = []  # every request id whose copies heard more than one answer, over all rounds
    for round_ in range(ROUNDS):
        rng = random.Random(round_)
        requests = _requests(rng, round_, racing.debtors, racing.payees)
        copies = [r for _, r in requests for _ in range(COPIES)]
        rng.shuffle(copies)
        answers = await asyncio.gather(*(_answer(racing.payments, r) for r in copies))
        for kind, request in requests:
            heard = Counter((status, body) for rid, status, body in answers if rid == request.request_id)
            if len(heard) != 1:
                diverged.append(f"{request.request_id}: {sorted((s, n) for (s, _), n in heard.items())}")
                continue
            ((status, body),) = heard
            assert status == "OK", f"{request.request_id}: {status}"
            payment = ppb.Payment.FromString(body)
            assert payment.status == KINDS[kind], f"{request.request_id} ({kind}): {payment}"
            stored = await racing.payments.GetPayment(ppb.GetPaymentRequest(payment_id=payment.payment_id))
            assert stored.payment == payment, "every copy heard the payment as it is stored"
            again = await racing.payments.CreatePayment(request)
            assert again.payment == payment, "a replay afterwards hears it too"
    assert not diverged, f"identical calls heard different answers ({len(diverged)} of {ROUNDS * REQUESTS}): {diverged}"
    await _one_payment_per_request_id(racing)


async def _one_payment_per_request_id(racing: Racing) -> None:
    """Money: each debtor paid exactly the sum of its distinct requests, once."""
    for debtor in racing.debtors:
        listed = await racing.payments.ListPayments(ppb.ListPaymentsRequest(debtor_account_id=debtor, page_size=100))
        paid = sum(_cents(p.amount.amount) for p in listed.payments if p.status == ppb.PAYMENT_STATUS_COMPLETED)
        assert len({p.payment_id for p in listed.payments}) == len(listed.payments)
        balance, available = await racing.client.balance(debtor)
        assert _cents(balance) == _cents(DEPOSIT) - paid
        assert _cents(available) - _cents(balance) == racing.overdraft[debtor], "no hold left behind"


def test_the_race_covers_every_kind_of_request() -> None:
    made = [kind for round_ in range(ROUNDS) for kind, _ in _requests(random.Random(round_), round_, ["d0", "d1"], ["p0", "p1"])]
    assert set(made) == set(KINDS)


async def _twins(call: Callable[[T], Awaitable[Message]], request: T) -> Counter[str]:
    """COPIES identical calls at once: how many heard each answer (the response serialized, or
    the status and reason)."""

    async def one() -> str:
        try:
            return (await call(request)).SerializeToString(deterministic=True).hex()
        except aio.AioRpcError as refused:
            status = rich_status(refused)
            info = unpack_detail(status, error_details_pb2.ErrorInfo) if status else None
            return f"{refused.code().name}:{info.reason if isinstance(info, error_details_pb2.ErrorInfo) else ''}"

    return Counter(await asyncio.gather(*(one() for _ in range(COPIES))))


async def test_identical_transfers_and_loan_requests_raced_at_once_hear_one_answer(racing: Racing) -> None:
    """The same shape elsewhere: Transfer, DisburseLoan and RepayLoan, each raced COPIES times."""
    channel = racing.bank_channel
    accounts, lending = agrpc.AccountServiceStub(channel), lgrpc.LendingServiceStub(channel)
    heard: dict[str, Counter[str]] = {}
    rng = random.Random(7)
    for n in range(4):
        transfer = apb.TransferRequest(
            request_id=f"twin-trf-{n}",
            debit_account_id=racing.debtors[n % 2],
            credit_account_id=rng.choice(racing.payees),
            amount=eur(f"{rng.randint(1, 5000) / 100:.2f}"),
        )
        heard[transfer.request_id] = await _twins(accounts.Transfer, transfer)
    customer = await racing.client.verified_customer("twin-loan")
    account = (await racing.client.default_account(customer)).account_id
    applied = await lending.ApplyForLoan(
        lpb.ApplyForLoanRequest(
            request_id="twin-a", customer_id=customer, account_id=account, principal=eur("1200.00"), term_months=12
        )
    )
    loan_id = applied.loan.loan_id
    await lending.ApproveLoan(lpb.ApproveLoanRequest(request_id="twin-p", loan_id=loan_id, annual_interest_rate="0.06"))
    heard["twin-d"] = await _twins(lending.DisburseLoan, lpb.DisburseLoanRequest(request_id="twin-d", loan_id=loan_id))
    for n in range(3):
        repay = lpb.RepayLoanRequest(request_id=f"twin-r-{n}", loan_id=loan_id, amount=eur(f"{rng.randint(100, 9000) / 100:.2f}"))
        heard[repay.request_id] = await _twins(lending.RepayLoan, repay)
    diverged = {rid: sorted(answers.values()) for rid, answers in heard.items() if len(answers) != 1}
    assert not diverged, f"identical calls heard different answers: {diverged}"
    refused = {rid: next(iter(answers)) for rid, answers in heard.items() if ":" in next(iter(answers))}
    assert not refused, refused
