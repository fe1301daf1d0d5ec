"""`ogpgy payments batch`: bulk payments from a pain.001 file (SubmitPaymentBatch, its progress
printed as lines finish), a batch's status (GetPaymentBatch), and its pain.002 status report
(GetPaymentBatchReport), as one of the bank's users: a customer pays from their own accounts."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from mesh.cli_operator import Subcommands, _as_client, _client_arguments, _issue_token, _tls


def add_batch_command(payments: Subcommands) -> None:
    """`payments batch ...`, under the `payments` command's subcommands."""
    batch = payments.add_parser("batch", help="bulk payments from a pain.001 file")
    actions = batch.add_subparsers(dest="batch_command", required=True)
    submit = actions.add_parser(
        "submit",
        help="pay every line of a pain.001.001.03 file from one account, or none",
        description="Sends FILE (ISO 20022 pain.001.001.03 or .09) as one batch debiting --account, validated whole "
        "and refused whole (nothing moved) when a line is wrong or the funds do not cover the sum; prints the batch "
        "as lines finish. Sending the same FILE with the same --request-id again answers the same batch.",
    )
    submit.add_argument("file", type=Path, help="the pain.001 XML file")
    submit.add_argument("--account", required=True, help="the account debited (acc_...)")
    submit.add_argument("--request-id", default="", help="idempotency key (default: batch-<the file's name>)")
    status = actions.add_parser("status", help="a batch's status and its lines counted by status")
    status.add_argument("batch", help="the batch id (pbt_...)")
    report = actions.add_parser("report", help="a batch's status report as ISO 20022 pain.002.001.03 XML")
    report.add_argument("batch", help="the batch id (pbt_...)")
    report.add_argument(
        "--output", "-o", type=Path, default=None, help="the file (default: the bank's name for it; - for stdout)"
    )
    for command in (submit, status, report):
        _client_arguments(command)


def _default_request_id(file: Path) -> str:
    """batch-<the file's name> in the characters a request id takes: the same file sent again is
    the same batch."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"batch-{file.name}")[:64]


def _line(batch: Any) -> str:
    from ogpgy.payment.v1 import bulk_payment_service_pb2 as bpb

    status = bpb.PaymentBatchStatus.Name(batch.status).removeprefix("PAYMENT_BATCH_STATUS_")
    reason = f" ({batch.failure_reason})" if batch.failure_reason else ""
    return (
        f"{batch.batch_id} {status}{reason}: {batch.line_count} lines, {batch.control_sum.amount} "
        f"{batch.control_sum.currency_code}; completed {batch.completed}, failed {batch.failed}, in flight {batch.in_flight}"
    )


async def _batch(args: argparse.Namespace) -> int:
    from common.grpc.client import bearer_channel
    from ogpgy.payment.v1 import bulk_payment_service_pb2 as bpb
    from ogpgy.payment.v1 import bulk_payment_service_pb2_grpc as bgrpc

    async with bearer_channel(args.target, await _issue_token(args), _tls(args)) as channel:
        stub = bgrpc.BulkPaymentServiceStub(channel)
        if args.batch_command == "submit":
            request = bpb.SubmitPaymentBatchRequest(
                request_id=args.request_id or _default_request_id(args.file),
                debtor_account_id=args.account,
                pain001=args.file.read_bytes(),
            )
            last = None
            async for answer in stub.SubmitPaymentBatch(request, timeout=3600):
                last = answer.batch
                print(_line(last), flush=True)
            return 0 if last is not None and last.status != bpb.PAYMENT_BATCH_STATUS_REFUSED else 1
        if args.batch_command == "status":
            print(_line((await stub.GetPaymentBatch(bpb.GetPaymentBatchRequest(batch_id=args.batch), timeout=30)).batch))
            return 0
        answer = await stub.GetPaymentBatchReport(bpb.GetPaymentBatchReportRequest(batch_id=args.batch), timeout=60)
    if str(args.output) == "-":
        sys.stdout.buffer.write(answer.content)
        return 0
    path = args.output or Path(answer.file_name)
    path.write_bytes(answer.content)
    print(f"{path}: pain.002.001.03, {len(answer.content)} bytes")
    return 0


def run_batch(args: argparse.Namespace) -> int | None:
    """The exit status of `ogpgy payments batch ...`; None when `args` names another command."""
    if args.command != "payments" or args.payments_command != "batch":
        return None
    return _as_client(_batch(args), "batch command failed")
