"""Password guessing against IssueToken, and what everybody else sees meanwhile: GetCustomer and
another user's login, alone and while a guesser sends wrong passwords as fast as it is answered."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from grpc import aio  # noqa: E402

from common.grpc.client import bearer_channel  # noqa: E402
from ogpgy.customer.v1 import customer_service_pb2 as cpb  # noqa: E402
from ogpgy.customer.v1 import customer_service_pb2_grpc as cgrpc  # noqa: E402
from ogpgy.identity.v1 import identity_service_pb2 as ipb  # noqa: E402
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc  # noqa: E402
from scripts.bench.harness import Result, bank_process, closed_loop  # noqa: E402
from tests.bank_helpers import fresh_document  # noqa: E402
from tests.conftest import document, issue_token, onboarding  # noqa: E402


async def _guess(target: str, stop: asyncio.Event, counts: dict[str, int], rate: float) -> None:
    """Wrong passwords for the admin, `rate` per second (0: as fast as they are answered)."""
    async with aio.insecure_channel(target) as channel:
        identity = igrpc.IdentityServiceStub(channel)
        while not stop.is_set():
            if rate:
                await asyncio.sleep(1 / rate)
            try:
                await identity.IssueToken(ipb.IssueTokenRequest(username="admin", password="a wrong guess"), timeout=10)
            except aio.AioRpcError as refused:
                counts[refused.code().name] = counts.get(refused.code().name, 0) + 1


async def _measure(target: str, seconds: float, flood: bool, rate: float) -> tuple[list[Result], dict[str, int]]:
    token = await issue_token(target)
    async with bearer_channel(target, token) as channel, aio.insecure_channel(target) as plain:
        customers = cgrpc.CustomerServiceStub(channel)
        request = onboarding(f"bench-{flood}", document=document(fresh_document()))
        customer = (await customers.OnboardCustomer(request, timeout=10)).customer.customer_id
        identity = igrpc.IdentityServiceStub(plain)
        stop, counts = asyncio.Event(), {}
        guessers = [asyncio.ensure_future(_guess(target, stop, counts, rate))] if flood else []
        try:
            reads = await closed_loop(
                "GetCustomer" + (" (guessing)" if flood else ""),
                lambda _: customers.GetCustomer(cpb.GetCustomerRequest(customer_id=customer), timeout=5),
                8,
                seconds,
            )
            logins = await closed_loop(
                "IssueToken, another user" + (" (guessing)" if flood else ""),
                lambda _: identity.IssueToken(ipb.IssueTokenRequest(username="reader", password="readers password"), timeout=10),
                1,
                seconds,
            )
        finally:
            stop.set()
            await asyncio.gather(*guessers)
    return [reads, logins], counts


async def _reader(target: str) -> None:
    async with bearer_channel(target, await issue_token(target)) as channel:
        request = ipb.CreateUserRequest(
            request_id="bench-reader", username="reader", password="readers password", roles=[ipb.ROLE_RELATIONSHIP_MANAGER]
        )
        await igrpc.IdentityServiceStub(channel).CreateUser(request, timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=12.0, help="wrong passwords per second (0: as fast as answered)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir, bank_process(data_dir) as target:
        asyncio.run(_reader(target))
        quiet, _ = asyncio.run(_measure(target, args.seconds, False, args.rate))
        flooded, counts = asyncio.run(_measure(target, args.seconds, True, args.rate))
    print(f"{'call':<38} {'QPS':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for r in [*quiet, *flooded]:
        print(f"{r.name:<38} {r.qps:>8.0f} {r.percentile(0.5):>8.2f} {r.percentile(0.99):>8.2f} {r.errors:>7}")
    print(f"\nthe guesser's answers: {counts}")


if __name__ == "__main__":
    main()
