"""`ogpgy`: the bank's command line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import shlex
import signal
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeAlias

import grpc

from common.config import Settings
from common.grpc.client import open_channel
from common.grpc.server import stop_signal
from common.grpc.tls import channel_credentials, is_loopback
from common.observability.logs import RPC_LOGGER, JsonFormatter
from common.observability.metrics import serve_metrics
from common.security.keyring import rotate
from common.security.tokens import key_id, load_or_create_private_key
from mesh import kubernetes
from mesh.config import DEFAULT_CONFIG, MeshConfigError, load_mesh_config
from mesh.distributed import Mesh, serve_settings
from mesh.embedded import ALL_MODULES, CONTEXT_NAMES, RunningBank, module_named, start_embedded, start_process
from mesh.kubernetes import Target
from mesh.local_servers import LocalServerError
from mesh.status import mesh_status

DEFAULT_PORT = 50051
DEFAULT_DATA_DIR = Path("var")

_TRY_NEXT = """\
OgPgy Bank is serving {services} on {target} ({data}).

Every call needs a token (the first admin's password is in {password_source}):
  TOKEN=$({token_command})
Try it (grpcurl is installed in .venv/bin by scripts/bootstrap):
  .venv/bin/grpcurl {grpcurl} {target} list
  .venv/bin/grpcurl {grpcurl} {target} describe ogpgy.customer.v1.CustomerService
  .venv/bin/grpcurl {grpcurl} -H "authorization: Bearer $TOKEN" -d '{{"request_id":"demo-1","given_name":"Ada","family_name":"Lovelace",\
"email":"ada@example.com","date_of_birth":{{"year":1990,"month":12,"day":10}},\
"document":{{"type":"DOCUMENT_TYPE_PASSPORT","number":"AB1234564","issuing_country_code":"GB"}},\
"address":{{"lines":["12 St James Sq"],"city":"London","postal_code":"SW1Y 4JH","country_code":"GB"}}}}' \
{target} ogpgy.customer.v1.CustomerService/OnboardCustomer
{http}
Stop with Ctrl-C (graceful: health turns NOT_SERVING, in-flight calls finish).
"""


# What add_subparsers returns (argparse names no public type for it).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ogpgy",
        description="OgPgy Bank mesh: a core bank as gRPC bounded contexts.",
        epilog="Run 'ogpgy up' and explore with grpcurl; see README.md for a walk-through.",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="json: one JSON object per line, with request id and trace id (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (0 picks a free port)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _up_command(commands)
    _serve_command(commands)
    _graph_command(commands)
    _config_command(commands)
    _deploy_command(commands)
    _status_command(commands)
    _velocitypay_command(commands)
    _mailsim_command(commands)
    _interest_command(commands)
    _loans_command(commands)
    _fees_command(commands)
    _reconcile_command(commands)
    _token_command(commands)
    _keys_command(commands)
    return parser


def _up_command(commands: Subcommands) -> None:
    up = commands.add_parser(
        "up",
        help="serve every context in one process (embedded mode)",
        description="Serve every context in one process: one gRPC server with health and reflection, "
        "SQLite files in the data directory, no other server needed. Every default below comes from the "
        "OGPGY_* environment (see `ogpgy config`) when it is set there. The first admin's password is "
        "OGPGY_ADMIN_PASSWORD (or a file of that name in OGPGY_SECRETS_DIR), never an argument; by default "
        "it is generated on first start and written to <data-dir>/admin-password.",
    )
    env = Settings()  # the environment's (and secret files') values are the defaults of the flags
    up.add_argument(
        "--host", default=env.host, help="address to listen on; beyond loopback only with --tls (default: %(default)s)"
    )
    up.add_argument(
        "--tls",
        action="store_true",
        default=env.tls,
        help="serve TLS with the bank's own CA (made in <data-dir>/pki on first start; clients trust <data-dir>/pki/ca.pem)",
    )
    up.add_argument("--port", type=int, default=env.port, help="port to listen on; 0 picks a free one (default: %(default)s)")
    up.add_argument(
        "--http-port",
        type=int,
        default=env.http_port,
        help="port of the HTTP access (the Connect protocol with JSON or binary, and gRPC-Web; the public keys at "
        "/.well-known/jwks.json); 0 picks a free one, -1 serves none (default: the gRPC port + 1, a free one with --port 0)",
    )
    up.add_argument("--data-dir", type=Path, default=env.data_dir, help="where the SQLite files live (default: %(default)s)")
    up.add_argument("--postgres-dsn", default=env.postgres_dsn, help="use PostgreSQL (one schema per context) instead of SQLite")
    up.add_argument("--redis-url", default=env.redis_url, help="use Redis Streams for events instead of the in-memory bus")
    up.add_argument(
        "--event-redelivery-ms",
        type=int,
        default=env.event_redelivery_ms,
        help="Redis: redeliver an unacked event after this idle time (default: %(default)s)",
    )
    up.add_argument(
        "--signing-key",
        type=Path,
        default=env.signing_key_path,
        help="Ed25519 PEM that signs tokens (default: <data-dir>/identity-signing-key.pem, made on first start)",
    )
    up.add_argument(
        "--fraud-rules",
        type=Path,
        default=env.fraud_rules_path,
        help="TOML of fraud rules (default: services/payment/fraud.toml)",
    )
    up.add_argument(
        "--velocitypay",
        default="",
        metavar="TARGET",
        help="reach the VelocityPay network at TARGET (default: serve the simulator beside the bank)",
    )
    up.add_argument(
        "--smtp",
        default=env.smtp_url,
        metavar="URL",
        help="send notifications to the mail server at smtp://HOST:PORT (default: serve the mail simulator beside the bank)",
    )
    up.add_argument(
        "--member-key-file",
        type=Path,
        default=env.network_member_key_path,
        help="the bank's key at VelocityPay, read by both ends (default: <data-dir>/velocitypay-member-key, made on first start)",
    )
    up.add_argument(
        "--interest-chunk", type=int, default=env.interest_chunk_size, help="accounts per interest chunk (default: %(default)s)"
    )
    up.add_argument("--no-cache", action="store_true", help="read through to the databases (benchmarks, diagnosis)")
    up.add_argument(
        "--loopback-calls",
        action="store_true",
        help="contexts call each other through the server's socket instead of in-process (benchmarks)",
    )
    up.add_argument(
        "--distributed",
        action="store_true",
        help="one process per context (and replica) of the mesh configuration, with Redis and PostgreSQL",
    )
    up.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="mesh configuration for --distributed (default: %(default)s)"
    )


def _serve_command(commands: Subcommands) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve one process of a distributed mesh (a context, or the contexts the configuration groups)",
        description="Serve one process kind of the mesh configuration; its contexts call each other in-process, "
        "every other context at its configured address(es).",
    )
    serve.add_argument("process", help="process name in the mesh configuration (by default, one per context)")
    serve.add_argument(
        "--replica", type=int, default=0, help="which of the process's addresses to listen on (default: %(default)s)"
    )
    serve.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="(default: %(default)s)")


def _config_command(commands: Subcommands) -> None:
    config = commands.add_parser(
        "config",
        help="the effective settings of a process, secrets redacted",
        description="Prints every setting as a process would start with it: what the mesh configuration "
        "gives (with --process), else OGPGY_* environment variables, files in OGPGY_SECRETS_DIR, then the "
        "defaults. Passwords are shown as ***.",
    )
    config.add_argument("--process", default="", help="a process of the mesh configuration (default: embedded `up`)")
    config.add_argument("--replica", type=int, default=0, help="(default: %(default)s)")
    config.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="(default: %(default)s)")


def _deploy_command(commands: Subcommands) -> None:
    deploy = commands.add_parser("deploy", help="render deployments of the mesh configuration").add_subparsers(
        dest="target", required=True
    )
    kubernetes = deploy.add_parser(
        "kubernetes",
        help="Kubernetes manifests (kustomize): a Deployment, headless Service, PodDisruptionBudget and "
        "NetworkPolicy per process of the mesh configuration",
        description="Renders a kustomization from the mesh configuration: its processes and replicas; the "
        "NetworkPolicies follow the contexts' imports. Apply with `kubectl apply -k DIR` once DIR/secrets/ holds "
        "the secrets the README lists.",
    )
    kubernetes.add_argument("--output", type=Path, required=True, help="directory to write the kustomization into")
    kubernetes.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="(default: %(default)s)")
    kubernetes.add_argument("--namespace", default=Target.namespace, help="(default: %(default)s)")
    kubernetes.add_argument("--image", default=Target.image, help="the bank's image (default: %(default)s)")
    kubernetes.add_argument("--cluster-domain", default=Target.cluster_domain, help="(default: %(default)s)")


def _graph_command(commands: Subcommands) -> None:
    graph = commands.add_parser(
        "graph",
        help="the context map drawn from the DI declarations: Mermaid, DOT or SVG",
        description="Contexts and their exported services; solid arrows are calls through imported stubs, "
        "dotted arrows are events from publisher to consumer.",
    )
    graph.add_argument("--format", choices=["mermaid", "dot", "svg"], default="mermaid", help="(default: %(default)s)")
    graph.add_argument("--output", type=Path, default=None, help="write to this file (default: standard output)")


def _status_command(commands: Subcommands) -> None:
    status = commands.add_parser("status", help="every context of a mesh: its addresses and health")
    status.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="(default: %(default)s)")


def _velocitypay_command(commands: Subcommands) -> None:
    network = commands.add_parser(
        "velocitypay",
        help="serve the VelocityPay network simulator alone (the outside world, for tests and demos)",
        description="Serve the VelocityPay simulator with injected faults; change them later with "
        "velocitypay.v1.SimulatorControlService/SetFaults.",
    )
    network.add_argument("--host", default="127.0.0.1")
    network.add_argument("--port", type=int, default=50061, help="(default: %(default)s)")
    network.add_argument("--latency-ms", type=int, default=0, help="added to every call")
    network.add_argument("--error-rate", type=float, default=0.0, help="share of calls answered UNAVAILABLE (0..1)")
    network.add_argument("--timeout-rate", type=float, default=0.0, help="share of calls never answered in time (0..1)")
    network.add_argument("--outage", action="store_true", help="answer every call UNAVAILABLE")
    network.add_argument(
        "--data-dir",
        type=Path,
        default=Path("var/velocitypay"),
        help="where the network keeps what it settled (default: %(default)s)",
    )
    network.add_argument(
        "--member-key-file",
        type=Path,
        default=DEFAULT_DATA_DIR / "velocitypay-member-key",
        help="the key of its member, the bank (default: the bank's, %(default)s)",
    )


def _mailsim_command(commands: Subcommands) -> None:
    mail = commands.add_parser(
        "mailsim",
        help="serve the mail server simulator alone (the outside world's SMTP, for tests and demos)",
        description="An SMTP server that keeps every message it accepts and misbehaves on demand.",
    )
    mail.add_argument("--host", default="127.0.0.1")
    mail.add_argument("--port", type=int, default=2525, help="(default: %(default)s)")
    mail.add_argument("--latency-ms", type=int, default=0, help="added before every answer to a message")
    mail.add_argument("--temporary-failure-rate", type=float, default=0.0, help="share of messages answered 451 (0..1)")
    mail.add_argument("--refuse", action="append", default=[], metavar="ADDRESS", help="answer 550 for this recipient")
    mail.add_argument(
        "--record", type=Path, default=None, metavar="FILE", help="append each accepted message to FILE (JSON lines)"
    )


def _interest_command(commands: Subcommands) -> None:
    interest = commands.add_parser("interest", help="daily interest runs").add_subparsers(dest="action", required=True)
    run = interest.add_parser("run", help="run (or resume) the interest of a business date, with a progress bar")
    run.add_argument("--date", required=True, type=date.fromisoformat, help="business date, YYYY-MM-DD")
    _client_arguments(run)


def _loans_command(commands: Subcommands) -> None:
    loans = commands.add_parser("loans", help="the loans' daily collection").add_subparsers(dest="action", required=True)
    collect = loans.add_parser("collect", help="run (or resume) the collection of a business date, with a progress bar (admins)")
    collect.add_argument("--date", required=True, type=date.fromisoformat, help="business date, YYYY-MM-DD")
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
    charge.add_argument("--month", required=True, type=lambda text: date.fromisoformat(f"{text}-01"), help="YYYY-MM")
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


def _client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=f"127.0.0.1:{DEFAULT_PORT}", help="where the bank listens (default: %(default)s)")
    parser.add_argument("--username", default="admin", help="(default: %(default)s)")
    parser.epilog = (
        "The password is never an argument (argv is visible to every user of the machine): it is OGPGY_PASSWORD, "
        "else the first admin's <data-dir>/admin-password for the admin, else asked for at the terminal."
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="(default: %(default)s)")
    parser.add_argument(
        "--cacert",
        type=Path,
        default=None,
        help="speak TLS, trusting this CA certificate (a bank served with --tls: <its data-dir>/pki/ca.pem)",
    )
    parser.add_argument(
        "--cert",
        type=Path,
        default=None,
        help="with --cacert, present this certificate (a distributed mesh: <data_dir>/pki/clients/operator.pem)",
    )
    parser.add_argument("--key", type=Path, default=None, help="the private key of --cert")


def _tls(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    if not args.cacert:
        return None
    if args.cert is None:
        return channel_credentials(args.cacert.read_bytes())
    key = args.key or args.cert.with_suffix(".key")
    return grpc.ssl_channel_credentials(args.cacert.read_bytes(), key.read_bytes(), args.cert.read_bytes())


async def _issue_token(args: argparse.Namespace) -> str:
    from ogpgy.identity.v1 import identity_service_pb2 as pb
    from ogpgy.identity.v1 import identity_service_pb2_grpc as pb_grpc

    password = _password(args.username, args.data_dir)
    async with open_channel(args.target, _tls(args)) as channel:
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
            while True:  # chunk by chunk; the number of accounts is not known ahead: a count, no ETA
                chunk = await accounts.ChargeMonthlyFees(
                    pb.ChargeMonthlyFeesRequest(
                        request_id=f"cli-fees-{args.month:%Y%m}-{after or 'start'}"[:64].replace("_", "-"),
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


async def _velocitypay(args: argparse.Namespace) -> int:
    from services.velocitypay.module import VelocityPayModule
    from services.velocitypay.simulator import Faults, NetworkState

    stop = stop_signal()
    settings = Settings(data_dir=args.data_dir, host=args.host, port=args.port, network_member_key_path=args.member_key_file)
    network = await start_process(settings, [VelocityPayModule])
    network.contexts["velocitypay"].resolve(NetworkState).faults = Faults(
        latency=args.latency_ms / 1000, error_rate=args.error_rate, timeout_rate=args.timeout_rate, outage=args.outage
    )
    print(f"VelocityPay simulator serving on {args.host}:{network.server.port} (its ledger in {args.data_dir})", flush=True)
    await stop
    await network.stop(2)
    return 0


async def _mailsim(args: argparse.Namespace) -> int:
    from mesh.mail_simulator import MailSimulator

    stop = stop_signal()
    mail = MailSimulator(args.host, args.port, args.record)
    mail.faults.latency = args.latency_ms / 1000
    mail.faults.temporary_failure_rate = args.temporary_failure_rate
    mail.faults.refused_recipients = frozenset(args.refuse)
    await mail.start()
    print(f"mail simulator serving SMTP on {args.host}:{mail.port}", flush=True)
    await stop
    await mail.stop()
    return 0


def _deploy(args: argparse.Namespace) -> int:
    config = load_mesh_config(args.config, known_contexts=CONTEXT_NAMES)
    target = Target(args.namespace, args.image, args.cluster_domain)
    written = kubernetes.write(kubernetes.render(config, target, ALL_MODULES), args.output)
    print(f"wrote {len(written)} files to {args.output}; put the secrets in {args.output / 'secrets'} (see the README), then")
    print(f"  kubectl apply -k {args.output}")
    return 0


def _config(args: argparse.Namespace) -> int:
    if args.process:
        mesh = load_mesh_config(args.config, known_contexts=CONTEXT_NAMES)
        settings = serve_settings(mesh, args.process, args.replica, os.environ.get("OGPGY_ADMIN_PASSWORD", ""))
    else:
        settings = Settings()
    for name, value in settings.redacted().items():
        print(f"{name} = {json.dumps(value)}")
    return 0


async def _token(args: argparse.Namespace) -> int:
    print(await _issue_token(args))
    return 0


async def _serve(args: argparse.Namespace) -> int:
    config = load_mesh_config(args.config, known_contexts=CONTEXT_NAMES)
    spec = config.process(args.process)
    settings = serve_settings(config, args.process, args.replica, os.environ.get("OGPGY_ADMIN_PASSWORD", ""))
    if spec.metrics:
        host, port = spec.metrics[args.replica].rsplit(":", 1)
        serve_metrics(int(port), host)
    elif spec.metrics_port:
        serve_metrics(spec.metrics_port, spec.listen.rsplit(":", 1)[0].strip("[]"))
    stop = stop_signal()
    node = await start_process(settings, [module_named(c) for c in spec.contexts])
    print(f"{args.process}[{args.replica}] serving {', '.join(node.server.service_names)} on {node.target}", flush=True)
    received = await stop
    logging.getLogger("ogpgy.mesh").info("%s received: shutting down", received.name)
    await node.stop()
    return 0


def _up_distributed(args: argparse.Namespace) -> int:
    config = load_mesh_config(args.config, known_contexts=CONTEXT_NAMES)
    mesh = Mesh(args.config, config, admin_password=Settings().admin_password, log_level=args.log_level)
    received: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _frame: received.append(number))
    mesh.start()
    print(
        f"OgPgy Bank mesh is up in {mesh.started_in:.1f} s ({len(mesh.replicas)} processes, logs in {config.data_dir / 'logs'}):"
    )
    for replica in mesh.replicas:
        contexts = ", ".join(config.process(replica.process).contexts)
        print(f"  {replica.process}[{replica.index}]  {replica.address:<22} pid {replica.proc.pid:<8} {contexts}")
    pki = config.data_dir / "pki"
    tls = f"--cacert {pki / 'ca.pem'} --cert {pki / 'clients' / 'operator.pem'}" if config.mutual_tls else ""
    print(f"Token: scripts/ogpgy token --target {config.target('identity')} --data-dir {config.data_dir} {tls}")
    print("Status: scripts/ogpgy status; stop with Ctrl-C.", flush=True)
    renewing = threading.Event()
    if config.mutual_tls:
        mesh.keep_certificates_fresh(renewing)
    mesh.supervise()  # a replica that dies is started again (`ogpgy status` counts the restarts)
    while not received:
        signal.pause()
    renewing.set()
    print("stopping the mesh...", file=sys.stderr, flush=True)
    mesh.stop()
    return 0


def _graph(args: argparse.Namespace) -> int:
    from mesh import graph

    drawn = {"mermaid": graph.mermaid, "dot": graph.dot, "svg": graph.svg}[args.format](ALL_MODULES)
    if args.output is None:
        print(drawn, end="")
    else:
        args.output.write_text(drawn, encoding="utf-8")
    return 0


def _status(args: argparse.Namespace) -> int:
    config = load_mesh_config(args.config, known_contexts=CONTEXT_NAMES)
    rows = mesh_status(config)
    print(
        f"{'process':<15} {'address':<21} {'health':<8} {'restarts':<8} {'contexts':<22} {'breakers':<28} {'outbox lag':<20}"
        " consumer lag"
    )
    for row in rows:
        print(
            f"{row.process:<15} {row.address:<21} {row.health:<8} {row.restarts:<8} {', '.join(row.contexts):<22} "
            f"{row.breakers or '-':<28} {row.outbox_lag or '-':<20} {row.consumer_lag or '-'}"
        )
    return 0 if all(row.health == "SERVING" for row in rows) else 1


def _token_hint(target: str, settings: Settings) -> str:
    """The `ogpgy token` that reaches this bank and finds its admin's password."""
    where = f"scripts/ogpgy token --target {target}"
    if settings.tls:
        where += f" --cacert {shlex.quote(str(settings.pki_path() / 'ca.pem'))}"
    if settings.admin_password:
        return f'OGPGY_PASSWORD="$OGPGY_ADMIN_PASSWORD" {where}'  # the operator's own, never printed
    return where if Path(settings.data_dir) == DEFAULT_DATA_DIR else f"{where} --data-dir {shlex.quote(str(settings.data_dir))}"


async def _up(args: argparse.Namespace) -> int:
    if not args.tls and not is_loopback(args.host):
        print(
            f"ogpgy up: refusing to serve plaintext on {args.host}, which other hosts reach (tokens would cross the "
            "network in clear). Add --tls: the bank then serves TLS with its own CA, whose certificate clients "
            f"trust from {args.data_dir / 'pki' / 'ca.pem'} (grpcurl -cacert, ogpgy token --cacert).",
            file=sys.stderr,
        )
        return 2
    settings = Settings(
        data_dir=args.data_dir,
        host=args.host,
        port=args.port,
        database="postgres" if args.postgres_dsn else "sqlite",
        postgres_dsn=args.postgres_dsn,
        redis_url=args.redis_url,
        event_redelivery_ms=args.event_redelivery_ms,
        admin_password=Settings().admin_password,
        cache_enabled=not args.no_cache,
        signing_key_path=args.signing_key,
        fraud_rules_path=args.fraud_rules,
        addresses={"velocitypay": args.velocitypay} if args.velocitypay else {},
        network_member_key_path=args.member_key_file,
        smtp_url=args.smtp,
        interest_chunk_size=args.interest_chunk,
        colocated_calls=not args.loopback_calls,
        tls=args.tls,
        http_port=_http_port(args.http_port, args.port),
    )
    stop = stop_signal()
    bank = await start_embedded(settings)
    print(
        _TRY_NEXT.format(
            services=", ".join(bank.server.service_names),
            target=bank.target,
            data="PostgreSQL" if settings.postgres_dsn else f"data in {settings.data_dir}",
            password_source="OGPGY_ADMIN_PASSWORD" if settings.admin_password else settings.data_dir / "admin-password",
            token_command=_token_hint(bank.target, settings),
            grpcurl=f"-cacert {shlex.quote(str(settings.pki_path() / 'ca.pem'))}" if settings.tls else "-plaintext",
            http=_http_hint(bank, settings),
        ),
        flush=True,
    )
    received = await stop
    logging.getLogger("ogpgy.mesh").info("%s received: shutting down", received.name)
    await bank.stop()
    return 0


def _http_port(asked: int | None, grpc_port: int) -> int | None:
    """The HTTP port `up` serves: the one asked for (-1: none), else the gRPC port's neighbour."""
    if asked is None:
        return grpc_port + 1 if grpc_port else 0
    return None if asked < 0 else asked


_HTTP_HINT = """Or over HTTP, on {url}: the Connect protocol (JSON or binary) and gRPC-Web, same calls, same tokens:
  curl {curl}-H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{{"page_size":5}}' \
{url}/ogpgy.customer.v1.CustomerService/ListCustomers
"""


def _http_hint(bank: RunningBank, settings: Settings) -> str:
    if bank.http is None:
        return ""
    host = bank.target.rsplit(":", 1)[0]
    url = f"{'https' if settings.tls else 'http'}://{host}:{bank.http.port}"
    curl = f"--cacert {shlex.quote(str(settings.pki_path() / 'ca.pem'))} " if settings.tls else ""
    return "\n" + _HTTP_HINT.format(url=url, curl=curl)


def _setup_logging(level: str, form: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if form == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    if form == "text":  # a line per call is for JSON logs, which machines read; people read the rest
        logging.getLogger(RPC_LOGGER).setLevel(logging.WARNING)
        logging.getLogger("ogpgy.events.consumed").setLevel(logging.WARNING)


def _as_client(command: Coroutine[Any, Any, int], failure: str) -> int:
    """Runs a command that calls the bank; a refusal or an unreachable bank is one line, exit 1."""
    try:
        return asyncio.run(command)
    except (OSError, grpc.RpcError) as exc:
        detail = f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.RpcError) else str(exc)
        print(f"\nogpgy: {failure}: {detail}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level, args.log_format)
    if args.metrics_port is not None:
        port = serve_metrics(args.metrics_port)
        logging.getLogger("ogpgy.mesh").info("metrics on http://127.0.0.1:%d/metrics", port)
    try:
        if args.command == "up":
            return _up_distributed(args) if args.distributed else asyncio.run(_up(args))
        if args.command == "serve":
            return asyncio.run(_serve(args))
        if args.command == "status":
            return _status(args)
        if args.command == "graph":
            return _graph(args)
        if args.command == "config":
            return _config(args)
        if args.command == "deploy":
            return _deploy(args)
    except (OSError, MeshConfigError, LocalServerError, RuntimeError) as exc:
        print(f"ogpgy: cannot start: {exc}", file=sys.stderr)
        return 1
    if args.command == "velocitypay":
        return asyncio.run(_velocitypay(args))
    if args.command == "mailsim":
        return asyncio.run(_mailsim(args))
    if args.command == "keys":
        return _rotate_keys(args)
    clients = {
        "interest": (_interest_run, "interest run refused"),
        "loans": (_collect_loans, "collection refused"),
        "fees": (_charge_fees, "fees not charged"),
        "reconcile": (_reconcile, "reconciliation failed"),
        "token": (_token, "no token"),
    }
    if args.command in clients:
        command, failure = clients[args.command]
        return _as_client(command(args), failure)
    return 2


if __name__ == "__main__":
    sys.exit(main())
