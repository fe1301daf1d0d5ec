"""`ogpgy payments list|retry|refund`: the operators' view of the bank's payments (ListPayments
over every account, with an AIP-160 filter) and their actions on a payment stopped for one
(RetryPayment, RefundPayment), as one of the bank's users (the admin by default); and, beside
them, `ogpgy payments batch` (mesh/cli_batches.py)."""

from __future__ import annotations

import argparse
from datetime import UTC
from typing import Any

from mesh.cli_batches import add_batch_command, run_batch
from mesh.cli_operator import (
    Subcommands,
    _as_client,
    _client_arguments,
    _invocation,
    _issue_token,
    _tls,
    add_operator_action,
)

FILTERS = (
    "Filter fields: status (PENDING, QUEUED, COMPLETED, FAILED, REJECTED, NEEDS_OPERATOR, REFUNDED), currency_code "
    "and debtor_account_id (exact text), amount_minor (whole minor units), create_time and update_time (RFC 3339 "
    'in quotes, e.g. "2026-12-01T00:00:00Z"), joined by AND.'
)


def add_payments_command(commands: Subcommands) -> None:
    payments = commands.add_parser(
        "payments", help="payments: list them (admins: every account's), retry or refund a stuck one, batches"
    ).add_subparsers(dest="payments_command", required=True)
    listing = payments.add_parser(
        "list",
        help="list payments, oldest first",
        description=f"Lists the payments of --account, or of every account (admins). {FILTERS}",
    )
    listing.add_argument("--account", default="", help="only this debtor account's payments (default: every account's)")
    listing.add_argument(
        "--filter", default="", help="AIP-160 filter, e.g. 'status = NEEDS_OPERATOR' (quote it for the shell; default: all)"
    )
    listing.add_argument("--page-size", type=int, default=100, help="payments per call (default: %(default)s)")
    _client_arguments(listing)
    for name, text in (
        ("retry", "hand a payment stopped NEEDS_OPERATOR back to the bank, which drives it on from where it stands"),
        ("refund", "give a NEEDS_OPERATOR payment's held funds back to the payer (two admins above the four-eyes amount)"),
    ):
        add_operator_action(payments, name, text, "payment", "e.g. pay_01J... (ogpgy payments list)")
    add_batch_command(payments)


def _payment_line(p: Any) -> str:
    from ogpgy.payment.v1 import payment_service_pb2 as pb

    status = str(pb.PaymentStatus.Name(p.status)).removeprefix("PAYMENT_STATUS_")
    payee = p.external.name + " " + p.external.iban if p.HasField("external") else p.internal.account_id
    created = p.create_time.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds")
    reason = f"  {p.failure_reason}" if p.failure_reason else ""
    waiting = f"  refund awaits a second admin (first: {p.refund_first_approver})" if p.refund_first_approver else ""
    return f"{p.payment_id}  {status:14} {p.amount.amount:>12} {p.amount.currency_code}  {p.debtor_account_id} -> {payee}  {created}{reason}{waiting}"


async def _list(args: argparse.Namespace) -> int:
    from common.grpc.client import bearer_channel
    from ogpgy.payment.v1 import payment_service_pb2 as pb
    from ogpgy.payment.v1 import payment_service_pb2_grpc as pb_grpc

    request = pb.ListPaymentsRequest(debtor_account_id=args.account, filter=args.filter, page_size=args.page_size)
    count = 0
    async with bearer_channel(args.target, await _issue_token(args), _tls(args)) as channel:
        stub = pb_grpc.PaymentServiceStub(channel)
        while True:
            answer = await stub.ListPayments(request, timeout=30)
            for payment in answer.payments:
                print(_payment_line(payment))
                count += 1
            if not answer.next_page_token:
                break
            request.page_token = answer.next_page_token
    print(f"{count} payment{'' if count == 1 else 's'}")
    return 0


async def _act(args: argparse.Namespace) -> int:
    from common.grpc.client import bearer_channel
    from ogpgy.payment.v1 import payment_service_pb2 as pb
    from ogpgy.payment.v1 import payment_service_pb2_grpc as pb_grpc

    request_id = args.request_id or _invocation(f"cli-{args.payments_command}")
    async with bearer_channel(args.target, await _issue_token(args), _tls(args)) as channel:
        stub = pb_grpc.PaymentServiceStub(channel)
        if args.payments_command == "retry":
            retry = pb.RetryPaymentRequest(request_id=request_id, payment_id=args.payment_id, reason=args.reason)
            payment = (await stub.RetryPayment(retry, timeout=60)).payment
        else:
            refund = pb.RefundPaymentRequest(request_id=request_id, payment_id=args.payment_id, reason=args.reason)
            payment = (await stub.RefundPayment(refund, timeout=60)).payment
    print(_payment_line(payment))
    print(f"request_id {request_id}")
    return 0


def run_payments(args: argparse.Namespace) -> int | None:
    """The exit status of `ogpgy payments ...`; None for another command."""
    if args.command != "payments":
        return None
    if args.payments_command == "batch":
        return run_batch(args)
    if args.payments_command == "list":
        return _as_client(_list(args), "no payments listed")
    return _as_client(_act(args), f"payment not {'retried' if args.payments_command == 'retry' else 'refunded'}")
