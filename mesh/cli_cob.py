"""`ogpgy cob run|status`: the close of business of a currency, as the interest context's
CloseBusinessDay and GetBusinessDay answer it, called as one of the bank's users (the admin by default)."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import Any

from mesh.cli_operator import Subcommands, _as_client, _client_arguments, _invocation, _issue_token, _seconds, _tls


def add_cob_command(commands: Subcommands) -> None:
    cob = commands.add_parser("cob", help="the close of business: the bank's day").add_subparsers(dest="action", required=True)
    run = cob.add_parser(
        "run",
        help="close every business date due, in order (interest, month-end fees, loan collection), catching up missed dates (admins)",
    )
    status = cob.add_parser("status", help="the last date closed, the one in progress and its step, the dates missed")
    for parser in (run, status):
        parser.add_argument("--currency", default="EUR", help="the currency whose calendar is closed (default: %(default)s)")
        _client_arguments(parser)


def _iso(d: Any) -> str:
    return date(d.year, d.month, d.day).isoformat()


def _steps(close: Any, pb: Any) -> str:
    names = {pb.CLOSE_STEP_INTEREST: "interest", pb.CLOSE_STEP_FEES: "fees", pb.CLOSE_STEP_COLLECTION: "collection"}
    done = list(close.steps).index(close.step_done) + 1 if close.step_done in close.steps else 0
    return ", ".join(f"{names[s]}{' done' if i < done else ''}" for i, s in enumerate(close.steps))


def _described(close: Any, pb: Any) -> str:
    days = [_iso(d) for d in close.interest_days]
    interest = days[0] if len(days) == 1 else f"{days[0]}..{days[-1]}"
    fees = f", fees of {', '.join(_iso(m)[:7] for m in close.fee_months)}" if close.fee_months else ""
    return f"interest of {interest}{fees} [{_steps(close, pb)}]"


async def _run(args: argparse.Namespace) -> int:
    from common.grpc.client import bearer_channel
    from ogpgy.interest.v1 import interest_service_pb2 as pb
    from ogpgy.interest.v1 import interest_service_pb2_grpc as pb_grpc

    request = pb.CloseBusinessDayRequest(request_id=_invocation(f"cli-cob-{args.currency}"), currency_code=args.currency)
    opened: set[str] = set()  # each date closed now opens with a message before its first step
    closed = 0
    async with bearer_channel(args.target, await _issue_token(args), _tls(args)) as channel:
        async for answer in pb_grpc.InterestServiceStub(channel).CloseBusinessDay(request):
            close, day = answer.close, _iso(answer.close.business_date)
            if not close.completed:
                opened.add(day)
                print(f"{day} {args.currency}: closing, {_described(close, pb)}", file=sys.stderr)
            elif day in opened:
                closed += 1
                print(f"{day} {args.currency}: closed, {_described(close, pb)}, {_seconds(close):.1f} s")
            else:  # the last date closed, as it stands: nothing was due
                print(f"{args.currency}: nothing due; last closed {day}")
    if closed:
        print(f"{args.currency}: {closed} business date{'s' if closed > 1 else ''} closed")
    return 0


async def _status(args: argparse.Namespace) -> int:
    from common.grpc.client import bearer_channel
    from ogpgy.interest.v1 import interest_service_pb2 as pb
    from ogpgy.interest.v1 import interest_service_pb2_grpc as pb_grpc

    async with bearer_channel(args.target, await _issue_token(args), _tls(args)) as channel:
        day = await pb_grpc.InterestServiceStub(channel).GetBusinessDay(pb.GetBusinessDayRequest(currency_code=args.currency))
    print(f"currency        {args.currency} ({day.time_zone})")
    print(f"last closed     {_iso(day.last_closed) if day.HasField('last_closed') else 'none yet'}")
    progress = day.in_progress
    print(
        f"in progress     {_iso(progress.business_date) + ': ' + _described(progress, pb) if day.HasField('in_progress') else 'none'}"
    )
    print(f"closable up to  {_iso(day.closing_through)}")
    print(f"due, not closed {', '.join(_iso(d) for d in day.missed) or 'none'}")
    return 0


def run_cob(args: argparse.Namespace) -> int | None:
    """The exit status of `ogpgy cob ...`; None when `args` names another command."""
    if args.command != "cob":
        return None
    if args.action == "run":
        return _as_client(_run(args), "close of business refused")
    return _as_client(_status(args), "no business day")
