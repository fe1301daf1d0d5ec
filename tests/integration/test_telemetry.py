"""Standard telemetry, as an operator's collector and Prometheus see it: spans leave the process
over OTLP when the standard OTEL_* variables ask for it, with the rpc and messaging semantic
conventions; the metrics are go-grpc-prometheus's, for calls served and calls made."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from mesh.status import scrape
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.customer.v1 import customer_service_pb2_grpc as cgrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from tests.bank_helpers import admin_channel, eur, eventually
from tests.conftest import onboarding
from tests.grpc_assert import field_violations, rpc_error
from tests.processes import BankProcess

Span = trace_pb2.Span


class OtlpReceiver:
    """A collector's OTLP/HTTP trace endpoint on loopback: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Span]] = []  # (resource attributes, span)
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    resource = attributes(resource_spans.resource.attributes)
                    received.extend((resource, s) for scope in resource_spans.scope_spans for s in scope.spans)
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def attributes(values: Any) -> dict[str, Any]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in values}


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    found = OtlpReceiver()
    yield found
    found.close()


@pytest.fixture
def observed_bank(tmp_path: Path, receiver: OtlpReceiver) -> Iterator[BankProcess]:
    """A bank exporting its spans to `receiver`, its metrics on a port of their own."""
    bank = BankProcess(tmp_path)
    bank.command[1:1] = ["--metrics-port", "0"]
    bank.env |= {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": "bank-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    bank.start()
    yield bank
    bank.stop()


def _spans(receiver: OtlpReceiver, kind: int, name: str) -> list[Span]:
    return [s for _, s in receiver.spans if s.kind == kind and s.name == name]


async def test_spans_leave_over_otlp_with_the_semantic_conventions(observed_bank: BankProcess, receiver: OtlpReceiver) -> None:
    async with admin_channel(observed_bank.target) as channel:
        customers, payments = cgrpc.CustomerServiceStub(channel), pgrpc.PaymentServiceStub(channel)
        await customers.OnboardCustomer(onboarding("otel-1"))
        await field_violations(customers.GetCustomer(cpb.GetCustomerRequest(customer_id="42")))
        nobody = ppb.CreatePaymentRequest(
            request_id="otel-2",
            debtor_account_id="acc_nobody",
            internal=ppb.InternalBeneficiary(account_id="acc_x"),
            amount=eur("1"),
        )
        await rpc_error(payments.CreatePayment(nobody), grpc.StatusCode.NOT_FOUND)

    async def exported() -> bool:
        return bool(_spans(receiver, Span.SPAN_KIND_CONSUMER, "process ogpgy.customer.v1.CustomerOnboarded")) and bool(
            _spans(receiver, Span.SPAN_KIND_CLIENT, "ogpgy.account.v1.AccountService/CheckAccountAccess")
        )

    await eventually(exported, within=20, what="the spans exported")
    assert {resource["service.name"] for resource, _ in receiver.spans} == {"bank-under-test"}, "OTEL_SERVICE_NAME"

    onboard = _spans(receiver, Span.SPAN_KIND_SERVER, "ogpgy.customer.v1.CustomerService/OnboardCustomer")[0]
    assert attributes(onboard.attributes) == {
        "rpc.system": "grpc",
        "rpc.service": "ogpgy.customer.v1.CustomerService",
        "rpc.method": "OnboardCustomer",
        "rpc.grpc.status_code": 0,
    }
    produced = [s for _, s in receiver.spans if s.kind == Span.SPAN_KIND_PRODUCER and s.trace_id == onboard.trace_id]
    destinations = [attributes(s.attributes)["messaging.destination.name"] for s in produced]
    assert any("ogpgy.customer.v1.CustomerOnboarded" in d for d in destinations), destinations
    consumed = [s for s in _spans(receiver, Span.SPAN_KIND_CONSUMER, "process ogpgy.customer.v1.CustomerOnboarded")]
    assert any(s.trace_id == onboard.trace_id for s in consumed), "the consumer continues the onboarding's trace"

    refused = _spans(receiver, Span.SPAN_KIND_SERVER, "ogpgy.customer.v1.CustomerService/GetCustomer")[0]
    assert attributes(refused.attributes)["rpc.grpc.status_code"] == 3
    assert refused.status.code == refused.status.STATUS_CODE_UNSET, "a caller's error is not the server's"

    asked = _spans(receiver, Span.SPAN_KIND_CLIENT, "ogpgy.account.v1.AccountService/CheckAccountAccess")
    failed = [s for s in asked if attributes(s.attributes)["rpc.grpc.status_code"] != 0]
    assert failed and all(s.status.code == s.status.STATUS_CODE_ERROR for s in failed), "any failure is a client span's error"
    served = _spans(receiver, Span.SPAN_KIND_SERVER, "ogpgy.account.v1.AccountService/CheckAccountAccess")
    assert {s.parent_span_id for s in served} <= {s.span_id for s in asked}, "the callee's span is the caller's span's child"


async def test_metrics_are_go_grpc_prometheus_for_calls_served_and_made(observed_bank: BankProcess) -> None:
    async with admin_channel(observed_bank.target) as channel:
        await cgrpc.CustomerServiceStub(channel).OnboardCustomer(onboarding("metrics-1"))
        await field_violations(cgrpc.CustomerServiceStub(channel).GetCustomer(cpb.GetCustomerRequest(customer_id="42")))
    port = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", "".join(observed_bank.output))
    assert port is not None, "the metrics port is logged"
    address = f"127.0.0.1:{port.group(1)}"

    async def account_opened() -> bool:  # the account context asked customer about the new customer
        samples = await asyncio.to_thread(scrape, address)
        return any(
            labels["grpc_service"] == "ogpgy.customer.v1.CustomerService"
            for labels, _ in samples.get("grpc_client_handled_total", [])
        )

    await eventually(account_opened, what="the account context's call to customer")
    metrics = await asyncio.to_thread(scrape, address)
    started = {(s["grpc_type"], s["grpc_method"]): v for s, v in metrics["grpc_server_started_total"]}
    handled = {(s["grpc_type"], s["grpc_method"], s["grpc_code"]): v for s, v in metrics["grpc_server_handled_total"]}
    assert started[("unary", "OnboardCustomer")] == 1 and handled[("unary", "OnboardCustomer", "OK")] == 1
    assert handled[("unary", "GetCustomer", "InvalidArgument")] == 1, "codes as Go names them"
    received = {s["grpc_method"]: v for s, v in metrics["grpc_server_msg_received_total"]}
    sent = {s["grpc_method"]: v for s, v in metrics["grpc_server_msg_sent_total"]}
    assert received["OnboardCustomer"] == 1 and sent["OnboardCustomer"] == 1
    made = {(s["grpc_service"], s["grpc_code"]) for s, _ in metrics["grpc_client_handled_total"]}
    assert ("ogpgy.customer.v1.CustomerService", "OK") in made, "the calls contexts make to each other are counted"
    assert metrics["grpc_client_handling_seconds_count"] and metrics["grpc_server_handling_seconds_count"]
