"""Events under faults: outbox survives a crash, redelivery applies once, poison is dead-lettered.

Real parts only: the bank as a subprocess killed at exact points, a real redis-server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from grpc import aio

from common.config import Settings
from common.events.bus import EventBus
from common.events.envelope import Envelope, event_type_of
from common.events.memory import InMemoryBackend
from common.events.redis_streams import DLQ_PREFIX, RedisStreamsBackend, _after, stream_of
from common.ids import new_id
from common.observability.metrics import CONSUMER_LAG
from mesh.embedded import start_embedded
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.customer.v1.events_pb2 import CustomerUpdated
from tests.bank_helpers import Bank, admin_channel, eventually
from tests.conftest import ADMIN_PASSWORD
from tests.processes import BankProcess
from tests.servers import RedisServer


async def _accounts_of(target: str, customer_id: str) -> list[apb.Account]:
    async with admin_channel(target) as channel:
        return list((await Bank(channel).accounts.ListAccounts(apb.ListAccountsRequest(customer_id=customer_id))).accounts)


async def _onboard_expecting_crash(target: str) -> None:
    """Onboards one customer; the server may die before or after answering."""
    async with admin_channel(target) as channel:
        try:
            await Bank(channel).verified_customer("crash")
        except aio.AioRpcError:
            pass


async def _only_customer(target: str) -> str:
    async with admin_channel(target) as channel:
        customers = (await Bank(channel).customers.ListCustomers(cpb.ListCustomersRequest())).customers
    assert len(customers) == 1, "onboarding was committed before the crash"
    return customers[0].customer_id


async def test_event_committed_before_a_crash_is_delivered_after_restart(tmp_path: Path) -> None:
    crashing = BankProcess(tmp_path, faults="relay.before_publish").start()
    await _onboard_expecting_crash(crashing.target)
    assert crashing.wait_exit(timeout=20) == 137, crashing.log
    assert "crashing at relay.before_publish" in crashing.log
    restarted = BankProcess(tmp_path).start()
    try:
        customer = await _only_customer(restarted.target)
        await eventually(lambda: _has_accounts(restarted.target, customer), what="default account after restart")
        await asyncio.sleep(0.3)
        assert len(await _accounts_of(restarted.target, customer)) == 1
    finally:
        restarted.stop()


async def _has_accounts(target: str, customer_id: str) -> bool:
    return bool(await _accounts_of(target, customer_id))


async def test_consumer_crash_before_ack_is_redelivered_and_applied_once(tmp_path: Path, redis_server: RedisServer) -> None:
    redis_args = ("--redis-url", redis_server.url, "--event-redelivery-ms", "300")
    crashing = BankProcess(tmp_path, *redis_args, faults="consumer.account.before_ack").start()
    await _onboard_expecting_crash(crashing.target)
    assert crashing.wait_exit(timeout=20) == 137, crashing.log
    restarted = BankProcess(tmp_path, *redis_args).start()
    try:
        customer = await _only_customer(restarted.target)
        assert len(await _accounts_of(restarted.target, customer)) == 1, "handled (and committed) before the crash"
        client = aioredis.from_url(redis_server.url)
        stream = stream_of("ogpgy.customer.v1.CustomerOnboarded")

        async def acked() -> bool:
            return (await client.xpending(stream, "account"))["pending"] == 0

        await eventually(acked, what="redelivered event acked")
        await client.aclose()
        assert len(await _accounts_of(restarted.target, customer)) == 1, "redelivery changed nothing"
    finally:
        restarted.stop()


def _envelope(payload: bytes, event_type: str = "test.v1.Thing") -> Envelope:
    return Envelope(new_id("evt"), event_type, payload, "2026-01-01T00:00:00+00:00", {})


async def _poison_run(backend: RedisStreamsBackend | InMemoryBackend) -> tuple[list[bytes], list[Envelope]]:
    handled: list[bytes] = []

    async def handler(envelope: Envelope) -> None:
        if envelope.payload == b"poison":
            raise ValueError("cannot digest this")
        handled.append(envelope.payload)

    await backend.start()
    await backend.subscribe(["test.v1.Thing"], "digest", handler)
    for payload in [b"a", b"poison", b"b", b"c"]:
        await backend.publish_many([_envelope(payload)])

    async def done() -> bool:
        return len(handled) == 3 and len(backend.dead_letters("digest")) == 1

    await eventually(done, what="good events handled and poison dead-lettered")
    return handled, backend.dead_letters("digest")


async def test_poison_event_is_dead_lettered_on_redis_and_the_rest_flow(redis_server: RedisServer) -> None:
    backend = RedisStreamsBackend(redis_server.url, redelivery_ms=100)
    try:
        handled, dead = await _poison_run(backend)
        assert handled == [b"a", b"b", b"c"] and dead[0].payload == b"poison"
        client = aioredis.from_url(redis_server.url)
        assert await client.xlen(f"{DLQ_PREFIX}digest") == 1
        assert (await client.xpending(stream_of("test.v1.Thing"), "digest"))["pending"] == 0
        await client.delete(stream_of("test.v1.Thing"), f"{DLQ_PREFIX}digest")
        await client.aclose()
    finally:
        await backend.stop()


async def test_poison_event_is_dead_lettered_in_memory() -> None:
    handled, dead = await _poison_run(InMemoryBackend())
    assert handled == [b"a", b"b", b"c"] and dead[0].payload == b"poison"


async def _batch_run(backend: RedisStreamsBackend | InMemoryBackend, stream_type: str) -> list[list[bytes]]:
    """Ten events published at once to a batch subscriber that fails its first batch."""
    batches: list[list[bytes]] = []

    async def handler(envelopes: list[Envelope]) -> None:
        batches.append([e.payload for e in envelopes])
        if len(batches) == 1:
            raise ValueError("the first batch fails: it must come again, whole or in parts")

    await backend.start()
    await backend.subscribe_batches([stream_type], "batcher", handler)
    await backend.publish_many([_envelope(str(i).encode(), stream_type) for i in range(10)])

    async def done() -> bool:
        return sorted(p for batch in batches[1:] for p in batch) == sorted(str(i).encode() for i in range(10))

    await eventually(done, what="every event handled after the failed batch")
    return batches


async def test_a_batch_subscriber_gets_a_read_at_once_and_a_failed_batch_again(redis_server: RedisServer) -> None:
    backend = RedisStreamsBackend(redis_server.url, redelivery_ms=100)
    try:
        batches = await _batch_run(backend, "test.v1.Batched")
        assert batches[0] == [str(i).encode() for i in range(10)], "one read, in order, one call"
        client = aioredis.from_url(redis_server.url)
        assert (await client.xpending(stream_of("test.v1.Batched"), "batcher"))["pending"] == 0, "acked together"
        await client.delete(stream_of("test.v1.Batched"))
        await client.aclose()
    finally:
        await backend.stop()


async def test_a_batch_subscriber_in_memory_gets_the_relays_batch_at_once() -> None:
    batches = await _batch_run(InMemoryBackend(), "test.v1.Batched")
    assert batches[0] == batches[1] == [str(i).encode() for i in range(10)]


async def test_a_groups_lag_sums_its_subscriptions(redis_server: RedisServer) -> None:
    """A context reading singles and batches through two subscriptions reports one lag, their sum:
    one subscription's measure does not overwrite the other's."""
    backend = RedisStreamsBackend(redis_server.url, redelivery_ms=60_000)  # the stuck event stays pending
    failed = asyncio.Event()

    async def stuck(envelope: Envelope) -> None:
        failed.set()
        raise ValueError("stays pending")

    async def fine(envelopes: list[Envelope]) -> None:
        return None

    try:
        stuck_subscription = await backend.subscribe(["test.v1.Stuck"], "lagging", stuck)
        fine_subscription = await backend.subscribe_batches(["test.v1.Fine"], "lagging", fine)
        await backend.publish_many([_envelope(b"s", "test.v1.Stuck"), _envelope(b"f", "test.v1.Fine")])
        await asyncio.wait_for(failed.wait(), 5)

        async def lag_is_the_stuck_event() -> bool:
            for measured in (stuck_subscription, fine_subscription):  # the second, once acked, has nothing behind
                await backend._measure_lag(measured)
            return bool(CONSUMER_LAG.labels("lagging")._value.get() == 1)

        await eventually(lag_is_the_stuck_event, within=5, what="a lag of exactly the stuck event")
    finally:
        await backend.stop()
        client = aioredis.from_url(redis_server.url)
        await client.delete(stream_of("test.v1.Stuck"), stream_of("test.v1.Fine"))
        await client.aclose()


@pytest.fixture
async def redis_bank(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[str]:
    settings = Settings(
        data_dir=tmp_path, port=0, redis_url=redis_server.url, event_redelivery_ms=300, admin_password=ADMIN_PASSWORD
    )
    bank = await start_embedded(settings)
    yield bank.target
    await bank.stop(grace=1)


async def test_onboarding_opens_one_default_account_each_over_redis_streams(redis_bank: str) -> None:
    async with admin_channel(redis_bank) as channel:
        client = Bank(channel)
        customers = await asyncio.gather(*(client.verified_customer(f"rs-{i}") for i in range(10)))
        accounts = await asyncio.gather(*(client.default_account(c) for c in customers))
        assert len({a.account_id for a in accounts}) == 10
    await asyncio.sleep(0.3)
    for customer in customers:
        assert len(await _accounts_of(redis_bank, customer)) == 1


async def test_operators_reach_dead_letters_through_the_bus(tmp_path: Path) -> None:
    """EventBus.dead_letters sat after a return statement (unreachable); operators and tests use it."""
    bus = EventBus(Settings(data_dir=tmp_path))
    await bus.initialize()

    async def refuse(envelope: Envelope) -> None:
        raise ValueError("cannot digest this")

    await bus.subscribe([CustomerUpdated], "digest", refuse)
    await bus.publish(Envelope(new_id("evt"), event_type_of(CustomerUpdated), b"", "2026-01-01T00:00:00+00:00", {}))
    assert [e.event_type for e in bus.dead_letters("digest")] == [event_type_of(CustomerUpdated)]
    await bus.shutdown()


async def test_trimming_never_drops_what_a_group_has_not_acknowledged(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """XADD MAXLEN cut entries a slow or stopped group had not read (after the outbox had marked
    them published): events lost. A stream is now trimmed only below its slowest group."""
    backend = RedisStreamsBackend(redis_server.url, max_len=10, lag_alarm=100)
    client = aioredis.from_url(redis_server.url)
    read, unread = stream_of("test.v1.Slow"), stream_of("test.v1.Unread")
    await client.delete(read, unread)
    await client.xgroup_create(read, "slow", id="0", mkstream=True)  # a group that has read nothing yet
    for i in range(500):
        for event_type in ("test.v1.Slow", "test.v1.Unread"):
            await backend.publish_many([Envelope(new_id("evt"), event_type, str(i).encode(), "2026-01-01T00:00:00+00:00", {})])
    await backend.trim(read)
    await backend.trim(unread)
    assert await client.xlen(read) == 500, "nothing the group has not acknowledged is gone"
    assert await client.xlen(unread) == 10, "a stream nobody reads keeps max_len"
    first = (await client.xreadgroup("slow", "c1", {read: ">"}, count=300))[0][1]
    await client.xack(read, "slow", *[message_id for message_id, _ in first])
    await client.xreadgroup("slow", "c1", {read: ">"}, count=50)  # delivered, not acknowledged: pending
    await backend.trim(read)
    assert await client.xlen(read) == 200, "acknowledged entries go, pending and unread ones stay"
    caplog.set_level(logging.ERROR)
    subscription = await backend.subscribe(["test.v1.Slow"], "slow", _ignore)
    await backend._measure_lag(subscription)
    assert any("is 200 events behind" in r.getMessage() for r in caplog.records), "a group far behind is an alarm"
    await subscription.close()
    await client.delete(read, unread)
    await client.aclose()
    await backend.stop()


async def test_a_group_that_acknowledged_since_it_was_listed_neither_breaks_a_publish_nor_duplicates_it(
    redis_server: RedisServer,
) -> None:
    """XINFO GROUPS said "pending 1", then the consumer acknowledged before XPENDING: its "min" was
    None, trimming raised inside publish, and the outbox published the event again."""
    backend = RedisStreamsBackend(redis_server.url)
    client = aioredis.from_url(redis_server.url)
    stream = stream_of("test.v1.Acked")
    await client.delete(stream)
    await client.xgroup_create(stream, "quick", id="0", mkstream=True)
    await backend.publish_many([Envelope(new_id("evt"), "test.v1.Acked", b"1", "2026-01-01T00:00:00+00:00", {})])
    listed = (await client.xinfo_groups(stream))[0]
    [(entry_id, _)] = (await client.xreadgroup("quick", "c1", {stream: ">"}))[0][1]
    stale = {**listed, "pending": 1, "last-delivered-id": entry_id}  # as listed just before the acknowledgement
    await client.xack(stream, "quick", entry_id)
    assert await backend._oldest_unacked(stream, stale) == _after(entry_id)

    async def failing_trim(stream: str) -> int:
        raise ValueError("trimming broke")

    backend.trim = failing_trim  # type: ignore[method-assign]  # a clean-up that fails
    backend._trimmed_at.clear()
    await backend.publish_many([Envelope(new_id("evt"), "test.v1.Acked", b"2", "2026-01-01T00:00:00+00:00", {})])
    assert await client.xlen(stream) == 2, "the publish succeeded once, whatever the trimming did"
    await client.delete(stream)
    await client.aclose()
    await backend.stop()


async def test_a_subscription_closes_promptly_while_its_handler_is_slow(redis_server: RedisServer) -> None:
    """redis-py can swallow the cancellation of a read (the subscription's close): the consumer then
    went on to the next event it had read, and close() waited for a handler that never ended."""
    backend = RedisStreamsBackend(redis_server.url, block_ms=50)
    stream = stream_of("test.v1.Closing")
    for round_ in range(30):
        for i in range(3):
            await backend.publish_many(
                [Envelope(new_id("evt"), "test.v1.Closing", str(i).encode(), "2026-01-01T00:00:00+00:00", {})]
            )
        subscription = await backend.subscribe(["test.v1.Closing"], f"closing-{round_}", _ignore)
        await asyncio.sleep(round_ % 6 * 0.02)  # reading, handling, or blocked in XREADGROUP
        await asyncio.wait_for(subscription.close(), 5)
    await backend._redis.delete(stream)
    await backend.stop()


async def _ignore(envelope: Envelope) -> None:
    await asyncio.sleep(3600)
