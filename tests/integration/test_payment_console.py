"""The operators' console for payments, over gRPC on an embedded bank: the bank-wide list with
AIP-160 filters and pages, a stuck payment retried to completion, a refund under four eyes, two
admins racing on one payment, and every action on the audit trail with its reason."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from grpc import aio

from common.config import Settings
from mesh.embedded import RunningBank, start_embedded
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from services.payment.repository import PaymentUnit, PaymentUnits
from services.velocitypay.simulator import faults_pb
from tests.bank_helpers import Bank, admin_channel, bearer_channel, create_user, eur
from tests.conftest import ADMIN_PASSWORD, issue_token
from tests.grpc_assert import error_reason, field_violations
from tests.processes import BIN
from velocitypay.v1 import network_pb2 as vpb
from velocitypay.v1 import network_pb2_grpc as vgrpc

PAYEE = ppb.ExternalBeneficiary(iban="DE89370400440532013000", name="Max Muster")
FAILED = grpc.StatusCode.FAILED_PRECONDITION
SECOND_ADMIN_PASSWORD = "the second admin's password"
_ids = itertools.count()


@dataclass
class Console:
    bank: RunningBank
    client: Bank
    payments: pgrpc.PaymentServiceStub
    second: pgrpc.PaymentServiceStub  # another admin
    control: vgrpc.SimulatorControlServiceStub
    identity: igrpc.IdentityServiceStub
    debtor: str
    overdraft: Decimal

    async def stuck(self, amount: str = "1.00", reason: str = "NETWORK_REJECTED; RELEASE_REFUSED_PROBE") -> str:
        """A payment to another bank stopped for an operator, its funds held (queued while the
        network is down, then marked as the bank marks one it could not finish: by default, one
        the network rejected whose hold the ledger would not release)."""
        await self.control.SetFaults(vpb.SetFaultsRequest(faults=faults_pb(outage=True)))
        try:
            request = ppb.CreatePaymentRequest(
                request_id=f"stuck-{next(_ids)}", debtor_account_id=self.debtor, external=PAYEE, amount=eur(amount)
            )
            payment = (await self.payments.CreatePayment(request)).payment
            assert payment.status == ppb.PAYMENT_STATUS_QUEUED

            async def stop(uow: PaymentUnit) -> int:
                return await uow.tx.execute(
                    "UPDATE payments SET status = 'NEEDS_OPERATOR', failure_reason = ? WHERE payment_id = ? AND status = 'QUEUED'",
                    reason,
                    payment.payment_id,
                )

            assert await self.bank.contexts["payment"].resolve(PaymentUnits).write(stop) == 1
        finally:
            await self.control.SetFaults(vpb.SetFaultsRequest(faults=faults_pb()))
        return payment.payment_id

    async def money(self) -> tuple[str, str]:
        """The debtor's balance, and what is held on it (its available balance counts an overdraft)."""
        balance, available = await self.client.balance(self.debtor)
        return balance, str(Decimal(balance) + self.overdraft - Decimal(available))

    async def get(self, payment_id: str) -> ppb.Payment:
        return (await self.payments.GetPayment(ppb.GetPaymentRequest(payment_id=payment_id))).payment


@pytest.fixture(params=["sqlite", "postgres"])
async def console(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Console]:
    engine = {}
    if request.param == "postgres":
        engine = {"database": "postgres", "postgres_dsn": request.getfixturevalue("postgres").new_database()}
    settings = Settings(
        data_dir=tmp_path,
        port=0,
        admin_password=ADMIN_PASSWORD,
        operator_four_eyes_minor={"EUR": 500},  # above 5.00 EUR a refund needs two admins
        payment_stale_seconds=3600,  # the worker leaves the tests' payments to them
        **engine,
    )
    bank = await start_embedded(settings)
    try:
        async with admin_channel(bank.target) as channel:
            client = Bank(channel)
            identity = igrpc.IdentityServiceStub(channel)
            await create_user(identity, "second.admin", ipb.ROLE_ADMIN, SECOND_ADMIN_PASSWORD)
            token = await issue_token(bank.target, "second.admin", SECOND_ADMIN_PASSWORD)
            async with bearer_channel(bank.target, token) as second:
                debtor = (await client.default_account(await client.verified_customer("console"))).account_id
                await client.deposit(debtor, "100.00", "console")
                balance, available = await client.balance(debtor)
                yield Console(
                    bank,
                    client,
                    pgrpc.PaymentServiceStub(channel),
                    pgrpc.PaymentServiceStub(second),
                    vgrpc.SimulatorControlServiceStub(channel),
                    identity,
                    debtor,
                    Decimal(available) - Decimal(balance),
                )
    finally:
        await bank.stop(grace=1)


async def _list(payments: pgrpc.PaymentServiceStub, filter_: str, page_size: int = 1) -> list[str]:
    found, token = [], ""
    while True:
        page = await payments.ListPayments(ppb.ListPaymentsRequest(filter=filter_, page_size=page_size, page_token=token))
        found += [p.payment_id for p in page.payments]
        if not (token := page.next_page_token):
            return found


async def test_operators_list_every_payment_by_filter_a_page_at_a_time(console: Console) -> None:
    stuck = [await console.stuck("2.00"), await console.stuck("3.00")]
    done = ppb.CreatePaymentRequest(request_id="done", debtor_account_id=console.debtor, external=PAYEE, amount=eur("4.00"))
    completed = (await console.payments.CreatePayment(done)).payment.payment_id
    assert await _list(console.payments, "status = NEEDS_OPERATOR") == stuck, "oldest first, one page at a time"
    assert await _list(console.payments, "status = NEEDS_OPERATOR AND amount_minor > 200") == stuck[1:]
    assert await _list(console.payments, 'status != NEEDS_OPERATOR AND create_time >= "2000-01-01T00:00:00Z"') == [completed]
    assert await _list(console.payments, 'create_time < "2000-01-01T00:00:00Z"') == []
    assert await _list(console.payments, "", 50) == [*stuck, completed]

    first = await console.payments.ListPayments(ppb.ListPaymentsRequest(filter="status = NEEDS_OPERATOR", page_size=1))
    other_filter = ppb.ListPaymentsRequest(filter="status = COMPLETED", page_size=1, page_token=first.next_page_token)
    assert "page_token" in await field_violations(console.payments.ListPayments(other_filter))
    for bad in ("status = STUCK", "amount > 1", "status = QUEUED OR status = FAILED", "x" * 2000):
        assert "filter" in await field_violations(console.payments.ListPayments(ppb.ListPaymentsRequest(filter=bad)))


async def test_a_customer_lists_only_an_account_they_may_read(console: Console, tmp_path: Path) -> None:
    customer = await console.client.verified_customer("lister")
    await create_user(console.identity, "lister", ipb.ROLE_CUSTOMER, "the lister's password", customer)
    own = (await console.client.default_account(customer)).account_id
    async with bearer_channel(
        console.bank.target, await issue_token(console.bank.target, "lister", "the lister's password")
    ) as ch:
        theirs = pgrpc.PaymentServiceStub(ch)
        assert (await theirs.ListPayments(ppb.ListPaymentsRequest(debtor_account_id=own))).payments == []
        with pytest.raises(aio.AioRpcError) as bank_wide:
            await theirs.ListPayments(ppb.ListPaymentsRequest())
        assert bank_wide.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(aio.AioRpcError) as retry:
            await theirs.RetryPayment(ppb.RetryPaymentRequest(request_id="r", payment_id=await console.stuck(), reason="mine"))
        assert retry.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_stuck_payment_retried_completes_once_and_the_trail_has_the_reason(console: Console) -> None:
    payment_id = await console.stuck("10.00")
    request = ppb.RetryPaymentRequest(request_id="retry-1", payment_id=payment_id, reason="ledger fixed, INC-42")
    retried = (await console.payments.RetryPayment(request)).payment
    assert (retried.status, retried.failure_reason) == (ppb.PAYMENT_STATUS_COMPLETED, "")
    assert (await console.payments.RetryPayment(request)).payment == retried, "a replay answers the same"
    assert await console.money() == ("90.00", "0.00"), "paid once, nothing left held"
    again = ppb.RetryPaymentRequest(request_id="retry-2", payment_id=payment_id, reason="again")
    assert (await error_reason(console.payments.RetryPayment(again), FAILED)).reason == "PAYMENT_NOT_NEEDS_OPERATOR"

    events = await console.identity.ListAuditEvents(ipb.ListAuditEventsRequest(resource=payment_id, page_size=100))
    reasons = {e.operation: e.reason for e in events.audit_events}
    assert reasons.get("RetryPayment.PENDING") == "ledger fixed, INC-42", reasons


async def test_a_refund_above_the_four_eyes_amount_needs_a_second_admin(console: Console) -> None:
    payment_id = await console.stuck("6.00")
    assert await console.money() == ("100.00", "6.00"), "6.00 held"
    asked = ppb.RefundPaymentRequest(request_id="refund-1", payment_id=payment_id, reason="customer complaint C-7")
    waiting = (await console.payments.RefundPayment(asked)).payment
    assert waiting.status == ppb.PAYMENT_STATUS_NEEDS_OPERATOR and waiting.refund_first_approver
    same_admin = ppb.RefundPaymentRequest(request_id="refund-2", payment_id=payment_id, reason="asking again")
    assert (await console.payments.RefundPayment(same_admin)).payment.status == ppb.PAYMENT_STATUS_NEEDS_OPERATOR
    assert await console.money() == ("100.00", "6.00"), "one admin moves nothing"
    retry = ppb.RetryPaymentRequest(request_id="retry-mid", payment_id=payment_id, reason="changed my mind")
    assert (await console.payments.RetryPayment(retry)).payment.status == ppb.PAYMENT_STATUS_COMPLETED, "a retry withdraws it"

    payment_id = await console.stuck("7.00")
    await console.payments.RefundPayment(ppb.RefundPaymentRequest(request_id="refund-3", payment_id=payment_id, reason="C-8"))
    second = ppb.RefundPaymentRequest(request_id="refund-4", payment_id=payment_id, reason="checked C-8")
    refunded = (await console.second.RefundPayment(second)).payment
    assert (refunded.status, refunded.failure_reason) == (ppb.PAYMENT_STATUS_REFUNDED, "REFUNDED_BY_OPERATOR")
    assert await console.money() == ("94.00", "0.00"), "6.00 paid; the 7.00 held is free again, once"
    late = ppb.RetryPaymentRequest(request_id="retry-late", payment_id=payment_id, reason="too late")
    assert (await error_reason(console.payments.RetryPayment(late), FAILED)).reason == "PAYMENT_NOT_NEEDS_OPERATOR"


async def test_two_admins_acting_on_one_payment_at_once_move_it_once(console: Console) -> None:
    for round_ in range(3):
        payment_id = await console.stuck("1.00")
        retry = ppb.RetryPaymentRequest(request_id=f"race-retry-{round_}", payment_id=payment_id, reason="race")
        refund = ppb.RefundPaymentRequest(request_id=f"race-refund-{round_}", payment_id=payment_id, reason="race")
        answers = await asyncio.gather(
            console.payments.RetryPayment(retry), console.second.RefundPayment(refund), return_exceptions=True
        )
        ok = [a.payment for a in answers if not isinstance(a, BaseException)]
        refused = [a for a in answers if isinstance(a, aio.AioRpcError)]
        assert len(ok) == 1 and len(refused) == 1, answers
        assert refused[0].code() == grpc.StatusCode.FAILED_PRECONDITION
        final = await console.get(payment_id)
        assert final.status in (ppb.PAYMENT_STATUS_COMPLETED, ppb.PAYMENT_STATUS_REFUNDED)
    assert (await console.money())[1] == "0.00", "nothing left held"


async def test_ogpgy_payments_list_retry_and_refund_as_an_operator_runs_them(console: Console) -> None:
    """The commands as printed in the README, against the running bank."""

    def ogpgy(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "OGPGY_PASSWORD": ADMIN_PASSWORD}
        command = [str(BIN / "ogpgy"), "payments", *args, "--target", console.bank.target]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)

    stuck = [await console.stuck("2.00"), await console.stuck("3.00")]
    listed = await asyncio.to_thread(ogpgy, "list", "--filter", "status = NEEDS_OPERATOR", "--page-size", "1")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()[:-1]] == stuck
    assert listed.stdout.splitlines()[-1] == "2 payments"
    retried = await asyncio.to_thread(ogpgy, "retry", stuck[0], "--reason", "ledger fixed", "--request-id", "cli-retry-1")
    assert retried.returncode == 0 and f"{stuck[0]}  COMPLETED" in retried.stdout, retried.stdout + retried.stderr
    refunded = await asyncio.to_thread(ogpgy, "refund", stuck[1], "--reason", "customer asked")
    assert refunded.returncode == 0 and f"{stuck[1]}  REFUNDED" in refunded.stdout, refunded.stdout + refunded.stderr
    again = await asyncio.to_thread(ogpgy, "retry", stuck[1], "--reason", "too late")
    assert again.returncode == 1 and "FAILED_PRECONDITION" in again.stderr, again.stderr
    bad = await asyncio.to_thread(ogpgy, "list", "--filter", "status = STUCK")
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr


async def test_a_payment_the_network_settled_is_never_refunded_only_retried(console: Console) -> None:
    """Its held funds are what the bank paid out through the network: a refund would pay twice."""
    payment_id = await console.stuck("8.00", "SETTLED_CAPTURE_REFUSED_PROBE")
    refund = ppb.RefundPaymentRequest(request_id="refund-settled", payment_id=payment_id, reason="customer asked")
    assert (await error_reason(console.payments.RefundPayment(refund), FAILED)).reason == "PAYMENT_SETTLED"
    assert (await error_reason(console.payments.RefundPayment(refund), FAILED)).reason == "PAYMENT_SETTLED", "kept"
    retry = ppb.RetryPaymentRequest(request_id="retry-settled", payment_id=payment_id, reason="ledger fixed")
    assert (await console.payments.RetryPayment(retry)).payment.status == ppb.PAYMENT_STATUS_COMPLETED
    assert await console.money() == ("92.00", "0.00"), "captured once"
