"""`ogpgy`'s operator commands: batch runs, reconciliation, tokens and signing keys, each a call
to a running bank (or to its data directory) as one of its users."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeAlias

import grpc

from common.config import Settings
from common.grpc.client import open_channel
from common.grpc.tls import channel_credentials
from common.security.keyring import rotate
from common.security.tokens import key_id, load_or_create_private_key

DEFAULT_PORT = 50051


DEFAULT_DATA_DIR = Path("var")


# What add_subparsers returns (argparse names no public type for it).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def business_day(text: str, today: date | None = None) -> date:
    """A business date: YYYY-MM-DD, or `today` / `yesterday` (UTC), so that a scheduled run (a
    CronJob, whose arguments no shell expands) names the day it is for."""
    now = today or datetime.now(UTC).date()
    relative = {"today": now, "yesterday": now - timedelta(days=1)}
    return relative[text] if text in relative else date.fromisoformat(text)


def business_month(text: str, today: date | None = None) -> date:
    """The first day of a month: YYYY-MM, or `last` (the month before today's, UTC)."""
    if text == "last":
        first = (today or datetime.now(UTC).date()).replace(day=1)
        return (first - timedelta(days=1)).replace(day=1)
    return date.fromisoformat(f"{text}-01")


def _interest_command(commands: Subcommands) -> None:
    interest = commands.add_parser("interest", help="daily interest runs").add_subparsers(dest="action", required=True)
    run = interest.add_parser("run", help="run (or resume) the interest of a business date, with a progress bar")
    run.add_argument("--date", required=True, type=business_day, help="business date: YYYY-MM-DD, today or yesterday (UTC)")
    _client_arguments(run)


def _loans_command(commands: Subcommands) -> None:
    loans = commands.add_parser("loans", help="the loans' daily collection, the loans in arrears").add_subparsers(
        dest="action", required=True
    )
    collect = loans.add_parser("collect", help="run (or resume) the collection of a business date, with a progress bar (admins)")
    collect.add_argument("--date", required=True, type=business_day, help="business date: YYYY-MM-DD, today or yesterday (UTC)")
    collect.add_argument("--currency", default="EUR", help="the loans' currency (default: %(default)s)")
    _client_arguments(collect)


def _fees_command(commands: Subcommands) -> None:
    fees = commands.add_parser("fees", help="monthly maintenance fees").add_subparsers(dest="action", required=True)
    charge = fees.add_parser(
        "charge",
        help="charge a month's maintenance fees (admins; a month that has ended)",
        description="Charges every account's monthly_fee for the month, waived where the balance never "
        "fell below the account's minimum_balance; at most once per account and month.",
    )
    charge.add_argument("--month", required=True, type=business_month, help="YYYY-MM, or last (the month before this one)")
    charge.add_argument("--currency", default="EUR", help="(default: %(default)s)")
    charge.add_argument("--chunk", type=int, default=1000, help="accounts per call (default: %(default)s)")
    _client_arguments(charge)


def _reconcile_command(commands: Subcommands) -> None:
    reconcile = commands.add_parser(
        "reconcile",
        help="compare what the VelocityPay network settled with what the ledger booked (admins)",
        description="Every payment the network settled must be booked exactly once in the clearing account, for its "
        "amount, and every booking there must be a settlement. Prints the counts and every discrepancy; exits 1 if any.",
    )
    reconcile.add_argument("--currency", default="", help="one currency (default: every currency)")
    _client_arguments(reconcile)


def _token_command(commands: Subcommands) -> None:
    token = commands.add_parser(
        "token",
        help='print an access token (for grpcurl: -H "authorization: Bearer $(ogpgy token)")',
        description="Ask the identity context for a token and print it.",
    )
    _client_arguments(token)


def _keys_command(commands: Subcommands) -> None:
    keys = commands.add_parser("keys", help="the token-signing keys").add_subparsers(dest="action", required=True)
    rotate = keys.add_parser(
        "rotate",
        help="add a new signing key: published at once, signing after key_publish_seconds",
        description="Writes a new Ed25519 signing key (mode 0600) beside the others. The identity context's processes "
        "read it within their refresh period and publish it (GetSigningKeys); it signs once published for "
        "key_publish_seconds, and the key it replaces stays published until the tokens it signed have expired. "
        "Nothing restarts.",
    )
    rotate.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="the bank's data directory, a mesh's too (default: %(default)s)"
    )


def _rotate_keys(args: argparse.Namespace) -> int:
    settings = Settings(data_dir=args.data_dir)
    if not settings.key_path().exists():
        print(f"ogpgy: no signing key in {args.data_dir}: start the bank once, or name its --data-dir", file=sys.stderr)
        return 1
    path = rotate(settings.rotated_keys_dir())
    kid = key_id(load_or_create_private_key(path).public_key())
    print(f"new signing key {kid} in {path}: published within {settings.revocation_refresh_seconds:g} s, signing after")
    print(f"{settings.key_publish_seconds:g} s; the key it replaces stays published until its tokens have expired")
    return 0


# Where a client command finds the bank, from the environment first, so that one shell set up
# for a bank (embedded, --tls, a distributed mesh's front door, a cluster) serves every command;
# BankClient.from_env (clients/python) reads the same names.
CLIENT_ENVIRONMENT = {
    "target": "OGPGY_TARGET",
    "username": "OGPGY_USERNAME",
    "data_dir": "OGPGY_DATA_DIR",
    "cacert": "OGPGY_CA_FILE",
    "cert": "OGPGY_CERT_FILE",
    "key": "OGPGY_KEY_FILE",
}


# The commands' own: where the token is asked for when the bank has no one front door (each
# process of a cluster serves its own contexts; the CronJobs name identity's). BankClient has none.
IDENTITY_TARGET = "OGPGY_IDENTITY_TARGET"


def _from_environment(name: str, default: str | None) -> str | None:
    return os.environ.get(CLIENT_ENVIRONMENT[name]) or default


def _optional_path(name: str) -> Path | None:
    found = _from_environment(name, None)
    return Path(found) if found else None


def add_operator_action(actions: Subcommands, name: str, text: str, target: str, example: str) -> None:
    """An operator's action on one stuck thing (`ogpgy payments retry`, `ogpgy sagas compensate`):
    its id, the reason the audit trail keeps, and the request's idempotency key."""
    action = actions.add_parser(
        name,
        help=text,
        description=f"{text[0].upper()}{text[1:]}. Admins only; the reason is kept in the audit trail. Send the "
        "same --request-id again to learn how a call that was cut short ended: it acts at most once.",
    )
    action.add_argument(f"{target}_id", metavar=f"{target.upper()}_ID", help=example)
    action.add_argument("--reason", required=True, help="why, for the audit trail (1 to 500 characters)")
    action.add_argument("--request-id", default="", help="the request's idempotency key (default: a new one)")
    _client_arguments(action)


def _client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        default=_from_environment("target", f"127.0.0.1:{DEFAULT_PORT}"),
        help="where the bank listens ($OGPGY_TARGET; default: %(default)s)",
    )
    parser.add_argument(
        "--identity-target",
        default=os.environ.get(IDENTITY_TARGET) or None,
        help="where to ask for the token, when the identity context is served elsewhere ($OGPGY_IDENTITY_TARGET; "
        "default: --target)",
    )
    parser.add_argument(
        "--username", default=_from_environment("username", "admin"), help="($OGPGY_USERNAME; default: %(default)s)"
    )
    parser.epilog = (
        "The password is never an argument (argv is visible to every user of the machine): it is OGPGY_PASSWORD, "
        "else the first admin's <data-dir>/admin-password for the admin, else asked for at the terminal. "
        "Every option takes its default from the environment variable it names."
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(_from_environment("data_dir", str(DEFAULT_DATA_DIR)) or DEFAULT_DATA_DIR),
        help="($OGPGY_DATA_DIR; default: %(default)s)",
    )
    parser.add_argument(
        "--cacert",
        type=Path,
        default=_optional_path("cacert"),
        help="speak TLS, trusting this CA certificate ($OGPGY_CA_FILE; a bank served with --tls: <its data-dir>/pki/ca.pem)",
    )
    parser.add_argument(
        "--cert",
        type=Path,
        default=_optional_path("cert"),
        help="with --cacert, present this certificate ($OGPGY_CERT_FILE; a distributed mesh: <data_dir>/pki/clients/operator.pem)",
    )
    parser.add_argument("--key", type=Path, default=_optional_path("key"), help="the private key of --cert ($OGPGY_KEY_FILE)")


def _tls(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    if not args.cacert:
        if args.cert or args.key:  # as BankClient: a certificate is never dropped silently
            raise OSError("a client certificate (--cert, OGPGY_CERT_FILE) needs the bank's CA too (--cacert, OGPGY_CA_FILE)")
        return None
    if args.cert is None:
        return channel_credentials(args.cacert.read_bytes())
    key = args.key or args.cert.with_suffix(".key")
    return grpc.ssl_channel_credentials(args.cacert.read_bytes(), key.read_bytes(), args.cert.read_bytes())


async def _issue_token(args: argparse.Namespace) -> str:
    from ogpgy.identity.v1 import identity_service_pb2 as pb
    from ogpgy.identity.v1 import identity_service_pb2_grpc as pb_grpc

    password = _password(args.username, args.data_dir)
    async with open_channel(args.identity_target or args.target, _tls(args)) as channel:
        answer = await pb_grpc.IdentityServiceStub(channel).IssueToken(
            pb.IssueTokenRequest(username=args.username, password=password), timeout=10
        )
    return str(answer.access_token)


def _password(username: str, data_dir: Path) -> str:
    """OGPGY_PASSWORD; else, for the admin, the first admin's password file; else a prompt."""
    if os.environ.get("OGPGY_PASSWORD"):
        return os.environ["OGPGY_PASSWORD"]
    first_admin = data_dir / "admin-password"
    if username == "admin" and first_admin.exists():
        return first_admin.read_text().strip()
    if not sys.stdin.isatty():
        raise OSError(f"no password for {username}: set OGPGY_PASSWORD (or run at a terminal to be asked)")
    return getpass.getpass(f"password of {username}: ")


@contextmanager
def _progress(what: str) -> Iterator[Callable[[int, int, str], None]]:
    """A progress bar on stderr with the share done and an ETA (rich); where stderr is no terminal
    (a log, CI) it prints the final state once, with no carriage returns."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(what, total=None, note="")
        yield lambda done, total, note: progress.update(task, completed=done, total=total or None, note=note)


async def _follow_run(
    args: argparse.Namespace, what: str, run: Callable[[Any], AsyncIterator[Any]], note: Callable[[Any], str]
) -> Any:
    """Follows a streamed batch run (`run` over an admin's channel) with a progress bar; its last
    state. A run's state has processed, total and duration."""
    from common.grpc.client import bearer_channel

    async with bearer_channel(args.target, await _issue_token(args), _tls(args)) as channel:
        last = None
        with _progress(what) as show:
            async for answer in run(channel):
                last = answer.run
                if last.total or last.processed:  # not the run's opening state, before its first chunk
                    show(last.processed, last.total, note(last))
    return last


def _seconds(run: Any) -> float:
    return float(run.duration.seconds + run.duration.nanos / 1e9)


def _business_date(day: date) -> Any:
    from ogpgy.type.v1 import date_pb2

    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def _invocation(prefix: str) -> str:
    """A request id of its own for each run of a command: asked again, a run that completed says
    so (a date runs once), while one that was cut short resumes for any request."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def _interest_run(args: argparse.Namespace) -> int:
    from ogpgy.interest.v1 import interest_service_pb2 as pb
    from ogpgy.interest.v1 import interest_service_pb2_grpc as pb_grpc

    request = pb.RunDailyInterestRequest(request_id=_invocation(f"cli-{args.date}"), business_date=_business_date(args.date))
    last = await _follow_run(
        args,
        f"interest {args.date}",
        lambda channel: pb_grpc.InterestServiceStub(channel).RunDailyInterest(request),
        lambda run: f"accounts, {run.total_interest.amount} {run.total_interest.currency_code}",
    )
    if last is not None:
        print(
            f"{args.date}: {pb.InterestRunStatus.Name(last.status)}, {last.processed} accounts, "
            f"{last.total_interest.amount} {last.total_interest.currency_code} posted, {last.errors} errors, {_seconds(last):.1f} s"
        )
    return 0


async def _collect_loans(args: argparse.Namespace) -> int:
    from ogpgy.lending.v1 import lending_service_pb2 as pb
    from ogpgy.lending.v1 import lending_service_pb2_grpc as pb_grpc

    day = _business_date(args.date)
    request = pb.RunCollectionRequest(request_id=_invocation(f"cli-{args.date}"), business_date=day, currency_code=args.currency)
    last = await _follow_run(
        args,
        f"collection {args.date}",
        lambda channel: pb_grpc.LendingServiceStub(channel).RunCollection(request),
        lambda run: f"loans, {run.collected.amount} {run.collected.currency_code} collected",
    )
    if last is not None:
        print(
            f"{args.date}: {pb.CollectionRunStatus.Name(last.status)}, {last.processed} loans, "
            f"{last.collected.amount} {last.collected.currency_code} collected, {_seconds(last):.1f} s"
        )
    return 0


async def _charge_fees(args: argparse.Namespace) -> int:
    from common.grpc.client import bearer_channel
    from ogpgy.account.v1 import account_service_pb2 as pb
    from ogpgy.account.v1 import account_service_pb2_grpc as pb_grpc
    from ogpgy.type.v1 import date_pb2

    month = date_pb2.Date(year=args.month.year, month=args.month.month, day=1)
    processed = charged = unpaid = 0
    total = Decimal(0)
    async with bearer_channel(args.target, await _issue_token(args), _tls(args)) as channel:
        with _progress(f"fees {args.month:%Y-%m}") as show:
            accounts, after = pb_grpc.AccountServiceStub(channel), ""
            invocation = _invocation(f"cli-fees-{args.month:%Y%m}")  # a chunk charged before answers from its record
            while True:  # chunk by chunk; the number of accounts is not known ahead: a count, no ETA
                chunk = await accounts.ChargeMonthlyFees(
                    pb.ChargeMonthlyFeesRequest(
                        request_id=f"{invocation}-{after or 'start'}"[:64].replace("_", "-"),
                        month=month,
                        currency_code=args.currency,
                        after_account_id=after,
                        limit=args.chunk,
                    ),
                    timeout=120,
                )
                processed, charged, unpaid = processed + chunk.processed, charged + chunk.charged, unpaid + chunk.unpaid
                total += Decimal(chunk.fees_charged.amount)
                show(processed, 0, f"accounts, {charged} charged, {total} {args.currency}")
                if chunk.done:
                    break
                after = chunk.last_account_id
    print(
        f"{args.month:%Y-%m}: {processed} accounts with a fee, {charged} charged ({total} {args.currency}), "
        f"{processed - charged - unpaid} waived, {unpaid} unpaid"
    )
    return 0


async def _reconcile(args: argparse.Namespace) -> int:
    from common.grpc.client import bearer_channel
    from ogpgy.payment.v1 import payment_service_pb2 as pb
    from ogpgy.payment.v1 import payment_service_pb2_grpc as pb_grpc

    async with bearer_channel(args.target, await _issue_token(args), _tls(args)) as channel:
        report = await pb_grpc.PaymentServiceStub(channel).ReconcileNetwork(
            pb.ReconcileNetworkRequest(currency_code=args.currency), timeout=120
        )
    print(
        f"network settled {report.network_settled}, booked to clearing {report.booked_transfers}, matched {report.matched}, "
        f"still completing {report.in_flight}, discrepancies {len(report.discrepancies)}{' (more not listed)' if report.truncated else ''}"
    )
    for d in report.discrepancies:
        print(f"  {d.kind:<24} payment {d.payment_id or '-':<30} transfer {d.transfer_id or '-':<30} {d.detail}")
    return 1 if report.discrepancies else 0


async def _token(args: argparse.Namespace) -> int:
    print(await _issue_token(args))
    return 0


# A run asked again for a date (or month) it has completed: nothing more to do, which a scheduled
# rerun (a CronJob's retry, a Job started again by hand) must not report as a failure.
DONE_ALREADY = ("INTEREST_RUN_ALREADY_COMPLETED", "COLLECTION_RUN_ALREADY_COMPLETED")


def _as_client(command: Coroutine[Any, Any, int], failure: str) -> int:
    """Runs a command that calls the bank; a refusal or an unreachable bank is one line, exit 1;
    a run that had already completed is said so, exit 0."""
    from common.grpc.status import reason_of

    try:
        return asyncio.run(command)
    except grpc.RpcError as exc:
        if reason_of(exc) in DONE_ALREADY:
            print(f"ogpgy: already done: {exc.details()}", file=sys.stderr)
            return 0
        print(f"\nogpgy: {failure}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"\nogpgy: {failure}: {exc}", file=sys.stderr)
        return 1


def add_operator_commands(commands: Subcommands) -> None:
    """The commands that call a running bank as one of its users (the admin by default)."""
    for add in (_interest_command, _loans_command, _fees_command, _reconcile_command, _token_command, _keys_command):
        add(commands)


def run_operator(args: argparse.Namespace) -> int | None:
    """The exit status of an operator's command; None when `args` names another command."""
    if args.command == "keys":
        return _rotate_keys(args)
    clients = {
        "interest": (_interest_run, "interest run refused"),
        "loans": (_collect_loans, "collection refused"),
        "fees": (_charge_fees, "fees not charged"),
        "reconcile": (_reconcile, "reconciliation failed"),
        "token": (_token, "no token"),
    }
    if args.command not in clients:
        return None
    command, failure = clients[args.command]
    return _as_client(command(args), failure)
