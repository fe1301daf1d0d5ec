"""`ogpgy sagas list|retry|compensate` and `ogpgy loans arrears`: the operators' view of the sagas
that stopped for a person (FAILED_NEEDS_OPERATOR) and of the loans in arrears, as the lending
context's ListSagas, RetrySaga, CompensateSaga and ListLoansInArrears answer them, called as one
of the bank's users (the admin by default)."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

from mesh.cli_operator import (
    Subcommands,
    _as_client,
    _client_arguments,
    _invocation,
    _issue_token,
    _tls,
    add_operator_action,
)

FILTER_HELP = "AIP-160 filter: comparisons joined by AND, e.g. %s (quote it for the shell; an empty filter lists everything)"


def add_sagas_commands(commands: Subcommands) -> None:
    """`sagas ...`, and `arrears` beside `collect` under the operator commands' `loans`."""
    sagas = commands.add_parser(
        "sagas", help="the sagas: list them, retry or compensate one stopped FAILED_NEEDS_OPERATOR (admins)"
    ).add_subparsers(dest="action", required=True)
    listing = sagas.add_parser(
        "list",
        help="list sagas, by saga id",
        description="Lists the bank's sagas. Filter fields: state (RUNNING, COMPENSATING, COMPLETED, COMPENSATED, "
        "FAILED_NEEDS_OPERATOR), saga_type (e.g. loan-disbursement), create_time and update_time (RFC 3339).",
    )
    listing.add_argument(
        "--filter", default="state = FAILED_NEEDS_OPERATOR", help=FILTER_HELP % "'state = FAILED_NEEDS_OPERATOR' (the default)"
    )
    listing.add_argument("--page-size", type=int, default=50, help="sagas per call (default: %(default)s)")
    _client_arguments(listing)
    for name, text in (
        ("retry", "drive a saga stopped FAILED_NEEDS_OPERATOR forward again from its failed step"),
        ("compensate", "run the compensations of a saga stopped FAILED_NEEDS_OPERATOR (money back; four eyes above an amount)"),
    ):
        add_operator_action(sagas, name, text, "saga", "e.g. sag-lon_01J... (ogpgy sagas list)")
    loans = _subcommands(commands.choices["loans"])
    arrears = loans.add_parser(
        "arrears",
        help="list the loans in arrears (admins)",
        description="Lists the loans owing something on installments already due, oldest loan first. Filter fields: "
        "days_past_due and overdue_amount_minor (whole numbers), currency and customer_id (exact text).",
    )
    arrears.add_argument("--filter", default="", help=FILTER_HELP % "'days_past_due > 30 AND currency = \"EUR\"'")
    arrears.add_argument("--page-size", type=int, default=50, help="loans per call (default: %(default)s)")
    _client_arguments(arrears)


def _subcommands(parser: argparse.ArgumentParser) -> Subcommands:
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return found[0]


async def _pages(args: argparse.Namespace, call: Any, request: Any, items: str) -> AsyncIterator[Any]:
    """Every item of a list, page after page."""
    from common.grpc.client import bearer_channel

    async with bearer_channel(args.target, await _issue_token(args), _tls(args)) as channel:
        while True:
            answer = await call(channel)(request)
            for item in getattr(answer, items):
                yield item
            if not answer.next_page_token:
                return
            request.page_token = answer.next_page_token


def _stub(channel: Any) -> Any:
    from ogpgy.lending.v1 import lending_service_pb2_grpc as pb_grpc

    return pb_grpc.LendingServiceStub(channel)


def _status(saga: Any) -> str:
    from ogpgy.lending.v1 import lending_service_pb2 as pb

    return str(pb.SagaStatus.Name(saga.status)).removeprefix("SAGA_STATUS_")


def _saga_line(saga: Any) -> str:
    amount = f"{saga.amount.amount} {saga.amount.currency_code}" if saga.HasField("amount") else ""
    waiting = (
        f" awaiting a second admin to {saga.pending_action.lower()} (first: {saga.first_approver})" if saga.pending_action else ""
    )
    updated = saga.update_time.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds")
    error = f"  {saga.error}" if saga.error else ""
    return f"{saga.saga_id}  {_status(saga):22} {saga.saga_type}  {amount}  updated {updated}{waiting}{error}"


async def _list(args: argparse.Namespace) -> int:
    from ogpgy.lending.v1 import lending_service_pb2 as pb

    request = pb.ListSagasRequest(filter=args.filter, page_size=args.page_size)
    count = 0
    async for saga in _pages(args, lambda c: _stub(c).ListSagas, request, "sagas"):
        print(_saga_line(saga))
        count += 1
    print(f"{count} saga{'' if count == 1 else 's'}")
    return 0


async def _act(args: argparse.Namespace) -> int:
    from common.grpc.client import bearer_channel
    from ogpgy.lending.v1 import lending_service_pb2 as pb

    request_id = args.request_id or _invocation(f"cli-{args.action}")
    async with bearer_channel(args.target, await _issue_token(args), _tls(args)) as channel:
        if args.action == "retry":
            answer = await _stub(channel).RetrySaga(
                pb.RetrySagaRequest(request_id=request_id, saga_id=args.saga_id, reason=args.reason)
            )
        else:
            request = pb.CompensateSagaRequest(request_id=request_id, saga_id=args.saga_id, reason=args.reason)
            answer = await _stub(channel).CompensateSaga(request)
    saga = answer.saga
    print(_saga_line(saga))
    for step in saga.steps:
        print(f"  {step.name:22} {step.state:12} attempts {step.attempts}  {step.last_error}".rstrip())
    print(f"request_id {request_id}")
    return 0


async def _arrears(args: argparse.Namespace) -> int:
    from ogpgy.lending.v1 import lending_service_pb2 as pb

    request = pb.ListLoansInArrearsRequest(filter=args.filter, page_size=args.page_size)
    count = 0
    async for loan in _pages(args, lambda c: _stub(c).ListLoansInArrears, request, "loans"):
        overdue = f"{loan.overdue_amount.amount} {loan.overdue_amount.currency_code}"
        print(f"{loan.loan_id}  {loan.customer_id}  {loan.days_in_arrears:4} days past due  overdue {overdue}")
        count += 1
    print(f"{count} loan{'' if count == 1 else 's'} in arrears")
    return 0


def run_sagas(args: argparse.Namespace) -> int | None:
    """The exit status of `ogpgy sagas ...` or `ogpgy loans arrears`; None for another command."""
    if args.command == "loans" and args.action == "arrears":
        return _as_client(_arrears(args), "no loans in arrears listed")
    if args.command != "sagas":
        return None
    if args.action == "list":
        return _as_client(_list(args), "no sagas listed")
    return _as_client(_act(args), f"saga not {'retried' if args.action == 'retry' else 'compensated'}")
