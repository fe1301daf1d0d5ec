"""The multi-level cache against a real redis-server: single-flight, negative caching,
cross-instance invalidation, and reads that survive Redis going away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from google.protobuf import field_mask_pb2

from common.cache.codecs import TextCodec
from common.cache.multilevel import CachePolicy, MultiLevelCache
from common.config import Settings
from mesh.embedded import RunningBank, start_embedded
from ogpgy.customer.v1 import customer_service_pb2 as pb
from ogpgy.customer.v1 import customer_service_pb2_grpc as pb_grpc
from tests.bank_helpers import admin_channel
from tests.conftest import ADMIN_PASSWORD, onboarding
from tests.servers import PostgresServer, RedisServer


class Source:
    """A counted stand-in for a database; slow enough for misses to overlap."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.calls = 0

    async def load(self, key: str) -> str | None:
        self.calls += 1
        await asyncio.sleep(0.01)
        return self.values.get(key)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis this test may stop and start."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


async def test_concurrent_misses_on_one_key_make_one_source_call(redis_server: RedisServer) -> None:
    cache = MultiLevelCache("sf", TextCodec(), redis_url=redis_server.url)
    source = Source({"k": "v"})
    answers = await asyncio.gather(*(cache.get("k", lambda: source.load("k")) for _ in range(100)))
    assert answers == ["v"] * 100 and source.calls == 1
    assert cache.stats.misses == 1
    await cache.get("k", lambda: source.load("k"))
    assert cache.stats.l1_hits == 1 and source.calls == 1
    await cache.stop()


async def test_absent_values_are_cached_too(redis_server: RedisServer) -> None:
    cache = MultiLevelCache("neg", TextCodec(), redis_url=redis_server.url)
    source = Source({})
    assert await cache.get("ghost", lambda: source.load("ghost")) is None
    assert await cache.get("ghost", lambda: source.load("ghost")) is None
    other = MultiLevelCache("neg", TextCodec(), redis_url=redis_server.url)
    assert await other.get("ghost", lambda: source.load("ghost")) is None
    assert source.calls == 1 and other.stats.l2_hits == 1, "the negative entry is shared through L2"
    await cache.stop()
    await other.stop()


async def test_l1_only_without_redis() -> None:
    cache = MultiLevelCache("local", TextCodec(), policy=CachePolicy(l1_ttl=0.05, jitter=0))
    source = Source({"k": "v"})
    await cache.get("k", lambda: source.load("k"))
    await cache.get("k", lambda: source.load("k"))
    await asyncio.sleep(0.08)
    await cache.get("k", lambda: source.load("k"))
    assert source.calls == 2, "expired after its TTL"


async def test_reads_survive_redis_stopping_and_recover(own_redis: RedisServer) -> None:
    policy = CachePolicy(l1_ttl=0.02, jitter=0, breaker_reset_timeout=0.3)
    cache = MultiLevelCache("outage", TextCodec(), redis_url=own_redis.url, policy=policy)
    await cache.start()
    source = Source({f"k{i}": f"v{i}" for i in range(20)})
    failures, reads = 0, 0

    async def read_load(seconds: float) -> None:
        nonlocal failures, reads
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            for i in range(20):
                try:
                    assert await cache.get(f"k{i}", lambda i=i: source.load(f"k{i}")) == f"v{i}"
                except Exception:  # noqa: BLE001 - counted: there must be none
                    failures += 1
                reads += 1
            await asyncio.sleep(0.01)

    await read_load(0.3)
    l2_before = cache.stats.l2_hits
    assert l2_before > 0
    own_redis.stop()
    await read_load(0.8)
    assert cache.stats.l2_errors > 0, "Redis was really gone"
    own_redis.start()
    await asyncio.sleep(0.5)  # past the breaker's reset timeout
    await read_load(0.5)
    assert failures == 0 and reads > 100  # reads through the outage, however slow the machine is today
    assert cache.stats.l2_hits > l2_before, "L2 is used again after Redis came back"
    await cache.stop()


@pytest.fixture
async def two_banks(
    tmp_path: Path, postgres: PostgresServer, redis_server: RedisServer
) -> AsyncIterator[tuple[RunningBank, RunningBank]]:
    """Two instances of the bank on one database and one Redis (as two replicas would be)."""
    dsn = postgres.new_database()
    settings = [
        Settings(
            data_dir=tmp_path / n,
            port=0,
            database="postgres",
            postgres_dsn=dsn,
            redis_url=redis_server.url,
            admin_password=ADMIN_PASSWORD,
            signing_key_path=tmp_path / "key.pem",
        )
        for n in ("a", "b")
    ]
    first = await start_embedded(settings[0])
    second = await start_embedded(settings[1])
    yield first, second
    await second.stop(grace=1)
    await first.stop(grace=1)


async def test_an_update_through_one_instance_is_seen_by_the_other(two_banks: tuple[RunningBank, RunningBank]) -> None:
    a, b = two_banks
    async with admin_channel(a.target) as ca, admin_channel(b.target) as cb:
        via_a, via_b = pb_grpc.CustomerServiceStub(ca), pb_grpc.CustomerServiceStub(cb)
        made = (await via_a.OnboardCustomer(onboarding("two-1"))).customer
        get = pb.GetCustomerRequest(customer_id=made.customer_id)
        assert (await via_b.GetCustomer(get)).customer.email == "ada@example.com"  # cached in b now
        assert (await via_b.GetCustomer(get)).customer.email == "ada@example.com"
        change = pb.UpdateCustomerRequest(
            request_id="two-2",
            customer_id=made.customer_id,
            customer=pb.Customer(email="new@example.com"),
            update_mask=field_mask_pb2.FieldMask(paths=["email"]),
        )
        await via_a.UpdateCustomer(change)
        updated_at = time.monotonic()
        while (await via_b.GetCustomer(get)).customer.email != "new@example.com":
            assert time.monotonic() - updated_at < 0.25, "b still serves the old value after the bound"
            await asyncio.sleep(0.005)


async def test_invalidations_leave_nothing_behind_per_key() -> None:
    """A counter per invalidated key grew without bound (100k keys -> 100k counters while L1 held
    10k); now only loads under way are tracked. And a load raced by an invalidation is answered
    but not stored."""
    import tracemalloc

    cache = MultiLevelCache("churn", TextCodec(), policy=CachePolicy(l1_size=100))
    await cache.start()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(100_000):
        await cache.invalidate(f"customer-{i}")
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 200_000, f"{grown} bytes kept for 100,000 invalidated keys"

    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        started.set()
        await release.wait()
        return "stale"

    reading = asyncio.create_task(cache.get("k", slow))
    await started.wait()
    await cache.invalidate("k")  # while the load is under way
    release.set()
    assert await reading == "stale", "the reader still gets its answer"
    assert await cache.get("k", lambda: _value("fresh")) == "fresh", "but it was not kept"
    await cache.stop()


async def _value(text: str) -> str:
    return text
