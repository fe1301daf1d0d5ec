"""Identical CreatePayment calls raced at once against a real embedded bank (internal payments, and
external ones through the VelocityPay simulator in its own process): every copy of one request_id
hears the same answer, the stored outcome, whichever copy moved the payment; none is ABORTED.

Seeded rounds, each with several request ids at once (random amounts, a random mix of internal and
external beneficiaries, the copies shuffled), on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.rpc import error_details_pb2
from grpc import aio

from common.config import Settings
from common.grpc.status import rich_status, unpack_detail
from mesh.embedded import RunningBank, start_embedded, start_process
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
        **database,  # type: ignore[arg-type]
    )
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
        yield Racing(bank, client, pgrpc.PaymentServiceStub(channel), debtors, payees, overdraft)
    await bank.stop(grace=1)


def _requests(rng: random.Random, round_: int, debtors: list[str], payees: list[str]) -> list[ppb.CreatePaymentRequest]:
    """REQUESTS distinct payments of this round: random debtor, amount and kind of beneficiary."""
    made = []
    for n in range(REQUESTS):
        request = ppb.CreatePaymentRequest(
            request_id=f"race-{round_}-{n}",
            debtor_account_id=rng.choice(debtors),
            amount=eur(f"{rng.randint(1, 5000) / 100:.2f}"),
            reference=f"race {round_}/{n}",
        )
        if rng.random() < 0.5:
            request.internal.account_id = rng.choice(payees)
        else:
            request.external.iban = GOOD_IBAN
            request.external.name = "Max Muster"
        made.append(request)
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
        copies = [r for r in requests for _ in range(COPIES)]
        rng.shuffle(copies)
        answers = await asyncio.gather(*(_answer(racing.payments, r) for r in copies))
        for request in requests:
            heard = Counter((status, body) for rid, status, body in answers if rid == request.request_id)
            if len(heard) != 1:
                diverged.append(f"{request.request_id}: {sorted((s, n) for (s, _), n in heard.items())}")
                continue
            ((status, body),) = heard
            assert status == "OK", f"{request.request_id}: {status}"
            payment = ppb.Payment.FromString(body)
            assert payment.status == ppb.PAYMENT_STATUS_COMPLETED, f"{request.request_id}: {payment}"
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
        paid = sum(_cents(p.amount.amount) for p in listed.payments)
        assert len({p.payment_id for p in listed.payments}) == len(listed.payments)
        balance, available = await racing.client.balance(debtor)
        assert _cents(balance) == _cents(DEPOSIT) - paid
        assert _cents(available) - _cents(balance) == racing.overdraft[debtor], "no hold left behind"


def test_the_race_covers_both_kinds_of_beneficiary() -> None:
    kinds = {
        r.WhichOneof("beneficiary")
        for round_ in range(ROUNDS)
        for r in _requests(random.Random(round_), round_, ["d"], ["p"])
    }
    assert kinds == {"internal", "external"}

