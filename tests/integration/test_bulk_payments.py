"""Bulk payments over gRPC, on SQLite and PostgreSQL: a pain.001 file (or its protobuf form) is
validated whole, its funds reserved whole or refused whole, its lines paid as payments, and its
pain.002 status report matches what GetPayment says of each line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc import aio
from lxml import etree

from common.config import Settings
from mesh.embedded import RunningBank, start_embedded
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.payment.v1 import bulk_payment_service_pb2 as bpb
from ogpgy.payment.v1 import bulk_payment_service_pb2_grpc as bgrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from services.velocitypay.simulator import faults_pb
from tests.bank_helpers import Bank, admin_channel, eur, eventually
from tests.grpc_assert import error_reason, field_violations
from tests.pain001 import Line, pain001
from velocitypay.v1 import network_pb2 as vpb
from velocitypay.v1 import network_pb2_grpc as vgrpc

IBAN = "DE89370400440532013000"  # a personal checking account's available balance: balance + 500.00 overdraft
PAIN002 = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.002.001.03"}


@dataclass
class World:
    bank: RunningBank
    client: Bank
    batches: bgrpc.BulkPaymentServiceStub
    payments: pgrpc.PaymentServiceStub
    control: vgrpc.SimulatorControlServiceStub
    payer: str
    payee: str

    async def submit(self, rid: str, data: bytes, account: str = "") -> list[bpb.PaymentBatch]:
        request = bpb.SubmitPaymentBatchRequest(request_id=rid, debtor_account_id=account or self.payer, pain001=data)
        return [answer.batch async for answer in self.batches.SubmitPaymentBatch(request)]

    async def lines(self, batch_id: str) -> list[bpb.PaymentBatchLineStatus]:
        found: list[bpb.PaymentBatchLineStatus] = []
        token = ""
        while True:
            request = bpb.ListPaymentBatchLinesRequest(batch_id=batch_id, page_size=2, page_token=token)
            page = await self.batches.ListPaymentBatchLines(request)
            found.extend(page.lines)
            token = page.next_page_token
            if not token:
                return found

    async def holds(self, account: str) -> list[apb.Hold]:
        return list((await self.client.accounts.ListHolds(apb.ListHoldsRequest(account_id=account))).holds)


@pytest.fixture
async def world(settings: Settings) -> AsyncIterator[World]:
    quick = settings.model_copy(update={"queue_poll_seconds": 0.05, "breaker_fail_max": 2, "breaker_reset_seconds": 1.0})
    bank = await start_embedded(quick)
    async with admin_channel(bank.target) as channel:
        client = Bank(channel)
        payer = (await client.default_account(await client.verified_customer("bulk-payer"))).account_id
        payee = (await client.default_account(await client.verified_customer("bulk-payee"))).account_id
        await client.deposit(payer, "1000.00", "bulk-payer")
        yield World(
            bank,
            client,
            bgrpc.BulkPaymentServiceStub(channel),
            pgrpc.PaymentServiceStub(channel),
            vgrpc.SimulatorControlServiceStub(channel),
            payer,
            payee,
        )
    await bank.stop(grace=1)


def _mixed(w: World) -> list[Line]:
    return [
        Line("inv-1", "100.00", account_id=w.payee, reference="Invoice 1"),
        Line("inv-2", "50.25", iban=IBAN, name="Max Muster", reference="Invoice 2"),
        Line("inv-3", "10.00", account_id=w.payee),
    ]


async def test_a_valid_file_pays_every_line_and_its_report_says_what_get_payment_says(world: World) -> None:
    answers = await world.submit("batch-1", pain001(_mixed(world)))
    final = answers[-1]
    assert (final.status, final.line_count, final.control_sum.amount) == (bpb.PAYMENT_BATCH_STATUS_COMPLETED, 3, "160.25")
    assert (final.completed, final.failed, final.in_flight) == (3, 0, 0)
    assert answers[0].batch_id == final.batch_id and len(answers) >= 2, "accepted, then progress"
    assert await world.client.balance(world.payer) == ("839.75", "1339.75"), "paid once each, nothing left held"
    assert (await world.client.balance(world.payee))[0] == "110.00"

    lines = await world.lines(final.batch_id)
    assert [(line.line_number, line.end_to_end_id) for line in lines] == [(1, "inv-1"), (2, "inv-2"), (3, "inv-3")]
    statuses = {}
    for line in lines:
        payment = (await world.payments.GetPayment(ppb.GetPaymentRequest(payment_id=line.payment.payment_id))).payment
        assert payment == line.payment
        statuses[line.end_to_end_id] = payment.status
    report = await world.batches.GetPaymentBatchReport(bpb.GetPaymentBatchReportRequest(batch_id=final.batch_id))
    root = etree.fromstring(report.content, etree.XMLParser(resolve_entities=False, no_network=True))
    assert root.findtext("p:CstmrPmtStsRpt/p:OrgnlGrpInfAndSts/p:GrpSts", namespaces=PAIN002) == "ACSC"
    reported = {
        tx.findtext("p:OrgnlEndToEndId", namespaces=PAIN002): tx.findtext("p:TxSts", namespaces=PAIN002)
        for tx in root.iterfind("p:CstmrPmtStsRpt/p:OrgnlPmtInfAndSts/p:TxInfAndSts", PAIN002)
    }
    assert reported == {e2e: "ACSC" for e2e, s in statuses.items() if s == ppb.PAYMENT_STATUS_COMPLETED}
    assert len(reported) == 3

    replay = await world.submit("batch-1", pain001(_mixed(world)))
    assert replay[-1].batch_id == final.batch_id and replay[-1].completed == 3
    assert await world.client.balance(world.payer) == ("839.75", "1339.75"), "a replay pays nothing again"
    reused = world.submit("batch-1", pain001(_mixed(world)[:2]))
    assert (await error_reason(reused, grpc.StatusCode.ALREADY_EXISTS)).reason == "IDEMPOTENCY_KEY_REUSED"


async def test_a_bad_file_is_refused_whole_with_a_violation_per_bad_line(world: World) -> None:
    good = _mixed(world)
    cases = {
        "control_sum": pain001(good, control_sum="160.26"),
        "number_of_transactions": pain001(good, count=4),
        "lines[1].external.iban": pain001([good[0], Line("inv-2", "5.00", iban="DE89370400440532013001"), good[2]]),
        "lines[2].end_to_end_id": pain001([good[0], good[1], Line("inv-1", "1.00", account_id=world.payee)]),
        "lines.amount.currency_code": pain001(
            [Line(line.end_to_end_id, line.amount, line.iban, line.account_id, currency="USD") for line in good]
        ),
        "lines[1].internal.account_id": pain001([good[0], Line("inv-2", "5.00", account_id="acc_CLEARING_EUR"), good[2]]),
        "pain001": b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x "boom">]><Document>&x;</Document>',
    }
    for n, (field, data) in enumerate(cases.items()):
        violations = await field_violations(world.submit(f"bad-{n}", data))
        assert field in violations, (field, violations)
    huge_count = await field_violations(world.submit("bad-count", pain001(good, count=99_999_999_999)))
    assert "number_of_transactions" in huge_count, "a count beyond int32 is a count that does not match, not an error"
    schema = await field_violations(world.submit("bad-schema", pain001(good).replace(b"<PmtMtd>TRF</PmtMtd>", b"")))
    assert "pain001" in schema
    assert await world.client.balance(world.payer) == ("1000.00", "1500.00"), "nothing moved, nothing held"
    assert await world.holds(world.payer) == []


async def test_funds_short_for_the_sum_refuse_the_whole_batch_and_hold_nothing(world: World) -> None:
    lines = [Line(f"big-{i}", "600.00", account_id=world.payee) for i in range(3)]  # 1800.00 of 1500.00 available
    answers = await world.submit("short-1", pain001(lines))
    final = answers[-1]
    assert (final.status, final.failure_reason, final.failed) == (bpb.PAYMENT_BATCH_STATUS_REFUSED, "INSUFFICIENT_FUNDS", 3)
    assert await world.client.balance(world.payer) == ("1000.00", "1500.00")
    assert await world.holds(world.payer) == [], "not even the lines the funds would have covered"
    assert {line.payment.status for line in await world.lines(final.batch_id)} == {ppb.PAYMENT_STATUS_FAILED}
    again = await world.submit("short-1", pain001(lines))
    assert again[-1].batch_id == final.batch_id and again[-1].status == bpb.PAYMENT_BATCH_STATUS_REFUSED


async def test_twins_racing_answer_one_batch_paid_once(world: World) -> None:
    data = pain001(_mixed(world))
    first, second = await asyncio.gather(world.submit("twin-1", data), world.submit("twin-1", data))
    assert first[-1].batch_id == second[-1].batch_id
    assert {first[-1].status, second[-1].status} == {bpb.PAYMENT_BATCH_STATUS_COMPLETED}
    assert await world.client.balance(world.payer) == ("839.75", "1339.75")


async def test_external_lines_queue_while_the_network_is_down_and_complete_later(world: World) -> None:
    await world.control.SetFaults(vpb.SetFaultsRequest(faults=faults_pb(outage=True)))
    lines = [
        Line("out-1", "20.00", iban=IBAN),
        Line("in-1", "30.00", account_id=world.payee),
        Line("out-2", "20.00", iban=IBAN),
        Line("out-3", "20.00", iban=IBAN),
    ]
    final = (await world.submit("down-1", pain001(lines)))[-1]
    assert (final.status, final.completed, final.in_flight) == (bpb.PAYMENT_BATCH_STATUS_IN_PROGRESS, 1, 3)
    assert await world.client.balance(world.payer) == ("970.00", "1410.00"), "the internal line paid, the rest held"
    await world.control.SetFaults(vpb.SetFaultsRequest(faults=faults_pb()))

    async def completed() -> bool:
        got = (await world.batches.GetPaymentBatch(bpb.GetPaymentBatchRequest(batch_id=final.batch_id))).batch
        return bool(got.status == bpb.PAYMENT_BATCH_STATUS_COMPLETED)

    await eventually(completed, 20, "the queued lines completed")
    assert await world.client.balance(world.payer) == ("910.00", "1410.00")


async def test_the_protobuf_form_is_checked_as_the_file_is(world: World) -> None:
    lines = bpb.PaymentBatchLines(
        lines=[
            bpb.PaymentBatchLine(
                end_to_end_id="p-1", internal=ppb.InternalBeneficiary(account_id=world.payee), amount=eur("5.00")
            ),
            bpb.PaymentBatchLine(
                end_to_end_id="p-2", external=ppb.ExternalBeneficiary(iban=IBAN, name="Max"), amount=eur("7.00")
            ),
        ],
        number_of_transactions=2,
        control_sum="12.00",
    )
    request = bpb.SubmitPaymentBatchRequest(request_id="proto-1", debtor_account_id=world.payer, lines=lines)
    final = [a.batch async for a in world.batches.SubmitPaymentBatch(request)][-1]
    assert final.status == bpb.PAYMENT_BATCH_STATUS_COMPLETED
    lines.control_sum = "12.01"
    wrong = bpb.SubmitPaymentBatchRequest(request_id="proto-2", debtor_account_id=world.payer, lines=lines)
    assert "control_sum" in await field_violations(_drain(world.batches.SubmitPaymentBatch(wrong)))


async def _drain(stream: aio.UnaryStreamCall[Any, Any]) -> None:
    async for _ in stream:
        pass
