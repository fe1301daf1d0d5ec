"""`ogpgy velocitypay` and `ogpgy mailsim`: the outside world's servers alone, for tests and demos."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from common.config import Settings
from common.grpc.server import stop_signal
from common.net import host_port
from mesh.cli_operator import DEFAULT_DATA_DIR, Subcommands
from mesh.embedded import start_process


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


async def _velocitypay(args: argparse.Namespace) -> int:
    from services.velocitypay.module import VelocityPayModule
    from services.velocitypay.simulator import Faults, NetworkState

    stop = stop_signal()
    settings = Settings(data_dir=args.data_dir, host=args.host, port=args.port, network_member_key_path=args.member_key_file)
    network = await start_process(settings, [VelocityPayModule])
    network.contexts["velocitypay"].resolve(NetworkState).faults = Faults(
        latency=args.latency_ms / 1000, error_rate=args.error_rate, timeout_rate=args.timeout_rate, outage=args.outage
    )
    where = host_port(args.host, network.server.port)
    print(f"VelocityPay simulator serving on {where} (its ledger in {args.data_dir})", flush=True)
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
    print(f"mail simulator serving SMTP on {mail.url}", flush=True)
    await stop
    await mail.stop()
    return 0


def add_simulator_commands(commands: Subcommands) -> None:
    """The outside world's servers, served alone: the payment network and a mail server."""
    _velocitypay_command(commands)
    _mailsim_command(commands)


def run_simulator(args: argparse.Namespace) -> int | None:
    """The exit status of a simulator's command; None when `args` names another command."""
    runners = {"velocitypay": _velocitypay, "mailsim": _mailsim}
    return asyncio.run(runners[args.command](args)) if args.command in runners else None
