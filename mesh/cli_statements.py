"""`ogpgy statement`: an account's statement over a range of business dates, written to a file
as CSV or ISO 20022 camt.053 XML (ExportStatement), as one of the bank's users: a customer for
their own accounts, an admin for any."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mesh.cli_operator import Subcommands, _as_client, _business_date, _client_arguments, _issue_token, _tls, business_day

FORMATS = {"csv": "STATEMENT_FORMAT_CSV", "camt053": "STATEMENT_FORMAT_CAMT053"}


def add_statement_command(commands: Subcommands) -> None:
    statement = commands.add_parser(
        "statement",
        help="export an account's statement to a file: CSV or camt.053 XML",
        description="Writes the statement of ACCOUNT from --from to --to (business dates, UTC, both inclusive) with its "
        "opening and closing balances, as CSV or ISO 20022 camt.053.001.08 XML, and prints what it wrote. A customer "
        "exports their own accounts (--username, OGPGY_PASSWORD); an admin any account.",
    )
    statement.add_argument("account", help="the account id (acc_...)")
    statement.add_argument(
        "--from", dest="first", required=True, type=business_day, help="first day: YYYY-MM-DD, today or yesterday"
    )
    statement.add_argument("--to", dest="last", required=True, type=business_day, help="last day: YYYY-MM-DD, today or yesterday")
    statement.add_argument("--format", choices=sorted(FORMATS), default="csv", help="(default: %(default)s)")
    statement.add_argument(
        "--output", "-o", type=Path, default=None, help="the file (default: the name the bank suggests; - for stdout)"
    )
    _client_arguments(statement)


async def _export(args: argparse.Namespace) -> int:
    from common.grpc.client import bearer_channel
    from ogpgy.account.v1 import account_service_pb2 as pb
    from ogpgy.account.v1 import account_service_pb2_grpc as pb_grpc

    request = pb.ExportStatementRequest(
        account_id=args.account,
        from_date=_business_date(args.first),
        to_date=_business_date(args.last),
        format=pb.StatementFormat.Value(FORMATS[args.format]),
    )
    async with bearer_channel(args.target, await _issue_token(args), _tls(args)) as channel:
        answer = await pb_grpc.AccountServiceStub(channel).ExportStatement(request, timeout=60)
    if str(args.output) == "-":
        sys.stdout.buffer.write(answer.content)
        return 0
    path = args.output or Path(answer.file_name)
    path.write_bytes(answer.content)
    opening, closing = answer.opening_balance, answer.closing_balance
    print(
        f"{path}: {answer.entry_count} entries, opening {opening.amount} {opening.currency_code}, "
        f"closing {closing.amount} {closing.currency_code}"
    )
    return 0


def run_statement(args: argparse.Namespace) -> int | None:
    """The exit status of `ogpgy statement`; None when `args` names another command."""
    if args.command != "statement":
        return None
    return _as_client(_export(args), "statement not exported")
