"""GetCustomer QPS and p50/p99 at 1 and 64 calls in flight, beside a bare grpc.aio echo server.

Usage: .venv/bin/python scripts/bench/get_customer.py [--seconds 5] [--rounds 3] [--customers 1000]
Each server runs in its own process (the bank as `ogpgy up`), the load from this one. Rounds
alternate echo and bank so that drift of the machine hits both; each row is the median round.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path

import grpc
from grpc import aio

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[2] / "gen")]

from ogpgy.customer.v1 import customer_service_pb2 as pb  # noqa: E402
from ogpgy.customer.v1 import customer_service_pb2_grpc as pb_grpc  # noqa: E402
from ogpgy.type.v1 import address_pb2, date_pb2  # noqa: E402
from scripts.bench.harness import PYTHON, ROOT, Result, bank_process, closed_loop, median_rows, print_table, server_process  # noqa: E402
from services.customer.domain import check_digit  # noqa: E402
from tests.bank_helpers import admin_channel  # noqa: E402
from tests.local_mesh import loopback_mesh  # noqa: E402

IN_FLIGHT = (1, 64)
ECHO_PAYLOAD = b"x" * 200  # about the size of a GetCustomer exchange


def bench_onboarding(i: int) -> pb.OnboardCustomerRequest:
    """The i-th customer of a benchmark: a document number of its own, valid, so KYC passes."""
    body = f"BK{i:06d}"
    return pb.OnboardCustomerRequest(
        request_id=f"bench-{i}",
        given_name="Bench",
        family_name=f"Customer{i}",
        email=f"bench{i}@example.com",
        date_of_birth=date_pb2.Date(year=1980, month=1, day=1),
        document=pb.IdentityDocument(
            type=pb.DOCUMENT_TYPE_PASSPORT, number=f"{body}{check_digit(body)}", issuing_country_code="DE"
        ),
        address=address_pb2.PostalAddress(lines=["Hauptstr. 1"], city="Berlin", postal_code="10115", country_code="DE"),
    )


async def _echo(target: str, seconds: float) -> list[Result]:
    async with aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/bench.Echo/Echo")
        return [await closed_loop("bare grpc.aio echo", lambda i: call(ECHO_PAYLOAD), n, seconds) for n in IN_FLIGHT]


async def _get_customer(
    target: str, seconds: float, customers: int, name: str, tls: grpc.ChannelCredentials | None = None, identity: str = ""
) -> list[Result]:
    async with admin_channel(target, tls, identity) as channel:
        stub = pb_grpc.CustomerServiceStub(channel)
        ids = []
        for start in range(0, customers, 100):
            made = await asyncio.gather(
                *(stub.OnboardCustomer(bench_onboarding(i)) for i in range(start, min(start + 100, customers)))
            )
            ids += [m.customer.customer_id for m in made]
        requests = [pb.GetCustomerRequest(customer_id=c) for c in ids]
        rng = random.Random(7)
        return [await closed_loop(name, lambda i: stub.GetCustomer(rng.choice(requests)), n, seconds) for n in IN_FLIGHT]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per row (default 5)")
    parser.add_argument("--customers", type=int, default=1000, help="customers onboarded before reading (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; rows show the median (default 3)")
    parser.add_argument(
        "--mesh", action="store_true", help="also through a distributed mesh on loopback, with mutual TLS and in plaintext"
    )
    args = parser.parse_args()
    variants = {"GetCustomer, auth + cache": (), "GetCustomer, auth, no cache": ("--no-cache",)}
    echo_rounds: list[list[Result]] = []
    bank_rounds: dict[str, list[list[Result]]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        with server_process([PYTHON, str(ROOT / "scripts/bench/echo_server.py")], r"on (127\.0\.0\.1:\d+)") as target:
            echo_rounds.append(asyncio.run(_echo(target, args.seconds)))
        for name, extra in variants.items():
            with (
                tempfile.TemporaryDirectory() as data_dir,
                bank_process(data_dir, *extra) as target,
            ):
                bank_rounds[name].append(asyncio.run(_get_customer(target, args.seconds, args.customers, name)))
        for mutual_tls in (True, False) if args.mesh else ():
            name = f"GetCustomer, mesh, {'mutual TLS' if mutual_tls else 'plaintext'}"
            mesh = loopback_mesh("ogpgy-bench-get-", log_level="WARNING", mutual_tls=mutual_tls)
            mesh.start()
            try:
                targets = mesh.config.targets()
                measured = _get_customer(targets["customer"], args.seconds, args.customers, name, mesh.tls, targets["identity"])
                bank_rounds.setdefault(name, []).append(asyncio.run(measured))
            finally:
                mesh.stop()
    echo = median_rows(echo_rounds)
    rows = echo + [row for rounds in bank_rounds.values() for row in median_rows(rounds)]
    print_table(rows, {r.in_flight: r for r in echo})


if __name__ == "__main__":
    main()
