"""Redis Streams bus: one stream per event type, one consumer group per subscribing context.

A consumer acks (XACK) only after its handler succeeded. An entry left pending (the handler
failed, or its consumer crashed) is taken over with XAUTOCLAIM once idle for `redelivery_ms`, by
any consumer of the group; after MAX_ATTEMPTS deliveries it goes to the group's dead-letter stream
and is acked, so the rest keep flowing.

A stream is never trimmed past what a group has not acknowledged: every few seconds a publisher
trims it by MINID below the slowest group (its oldest pending entry, else the last one it was
delivered). Only a stream that no group reads is cut to about `max_len` entries. (XADD MAXLEN
deleted entries a slow or stopped group had not read yet, after the outbox had marked them
published: events lost, and the lag metric read 0. ACK-aware trimming needs Redis 8.2.) A group
more than `lag_alarm` entries behind is logged as an error at every measure.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT, KeyT, StreamIdT

from common.events.bus import MAX_ATTEMPTS, BatchHandler, DeadLetterSink, Handler, error_text, log, meant_for, singly
from common.events.envelope import Envelope
from common.faults import crash_point
from common.observability.metrics import CONSUMER_LAG, DEAD_LETTERED

STREAM_PREFIX = "ogpgy:events:"
DLQ_PREFIX = "ogpgy:dead-letters:"
ERROR_PREFIX = "ogpgy:event-errors:"  # <group>:<entry id> -> the last error its handler raised
ERROR_TTL_SECONDS = 7 * 24 * 3600
_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
_names = itertools.count(1)
_ReadAnswer = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]  # XREADGROUP: per stream, its messages


def stream_of(event_type: str) -> str:
    return f"{STREAM_PREFIX}{event_type}"


def _fields(envelope: Envelope) -> dict[FieldT, EncodableT]:
    return {
        "event_id": envelope.event_id,
        "event_type": envelope.event_type,
        "payload": envelope.payload,
        "occurred_at": envelope.occurred_at,
        "headers": envelope.headers_json(),
    }


def _envelope(fields: dict[bytes, bytes]) -> Envelope:
    return Envelope(
        event_id=fields[b"event_id"].decode(),
        event_type=fields[b"event_type"].decode(),
        payload=fields[b"payload"],
        occurred_at=fields[b"occurred_at"].decode(),
        headers=json.loads(fields[b"headers"]),
    )


@dataclass
class _StreamSubscription:
    backend: RedisStreamsBackend
    event_types: list[str]
    group: str
    handler: BatchHandler
    one_at_a_time: bool  # a handler of single events: each acked (or left pending) alone
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{next(_names)}")
    task: asyncio.Task[None] | None = None
    closing: bool = False

    async def close(self) -> None:
        # The flag, not only the cancel: redis-py can turn a cancelled read into a connection
        # error, which the consumer would otherwise treat as "Redis is down, retry".
        self.closing = True
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None


TRIM_EVERY_SECONDS = 5.0


def _after(entry_id: bytes | str) -> str:
    """The smallest stream id after `entry_id` ("ms-seq")."""
    ms, _, seq = (entry_id.decode() if isinstance(entry_id, bytes) else entry_id).partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class RedisStreamsBackend:
    def __init__(
        self, url: str, *, redelivery_ms: int = 5000, max_len: int = 100_000, block_ms: int = 200, lag_alarm: int = 10_000
    ) -> None:
        self._redis = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.redelivery_ms = redelivery_ms
        self._max_len = max_len
        self._block_ms = block_ms
        self._lag_alarm = lag_alarm
        self._subscriptions: list[_StreamSubscription] = []
        self._dead: dict[str, list[Envelope]] = {}
        self.sink: DeadLetterSink | None = None
        self._trimmed_at: dict[str, float] = {}
        self._behind: dict[tuple[str, str], int] = {}  # (group, subscription) -> entries behind

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
        await self._redis.aclose()

    async def reachable(self) -> None:
        await self._redis.ping()

    async def publish_many(self, envelopes: list[Envelope]) -> None:
        """One pipelined round trip for the XADDs, in order (if it fails midway, the relay publishes
        them all again: consumers' inboxes make the repeats harmless)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for envelope in envelopes:
                pipe.xadd(stream_of(envelope.event_type), _fields(envelope))
            await pipe.execute()
        for stream in dict.fromkeys(stream_of(e.event_type) for e in envelopes):
            await self._trim_when_due(stream)

    async def _trim_when_due(self, stream: str) -> None:
        if time.monotonic() - self._trimmed_at.get(stream, 0.0) >= TRIM_EVERY_SECONDS:
            self._trimmed_at[stream] = time.monotonic()
            try:
                await self.trim(stream)
            except Exception:  # noqa: BLE001 - the event is out: a failed clean-up must not make it go out twice
                log.warning("trimming %s failed; the next publish tries again", stream, exc_info=True)

    async def trim(self, stream: str) -> int:
        """Drops what every group has acknowledged (by MINID below the slowest group); a stream no
        group reads keeps about max_len entries. Returns how many entries went."""
        groups = await self._redis.xinfo_groups(stream)
        if not groups:
            return int(await self._redis.xtrim(stream, maxlen=self._max_len, approximate=False))
        safe = min([await self._oldest_unacked(stream, group) for group in groups], key=_id_key)
        return int(await self._redis.xtrim(stream, minid=safe, approximate=False))

    async def _oldest_unacked(self, stream: str, group: dict[str, Any]) -> str:
        """The first id a group still needs: its oldest pending entry, else the one after the last
        delivered to it (everything up to that one is acknowledged)."""
        name = group["name"]
        if int(group.get("pending") or 0):
            oldest = (await self._redis.xpending(stream, name))["min"]
            if oldest is not None:  # None: acknowledged since the group was listed
                return oldest.decode() if isinstance(oldest, bytes) else str(oldest)
        return _after(group["last-delivered-id"])

    async def subscribe(self, event_types: list[str], consumer: str, handler: Handler) -> _StreamSubscription:
        return await self._subscribe(_StreamSubscription(self, event_types, consumer, singly(handler), one_at_a_time=True))

    async def subscribe_batches(self, event_types: list[str], consumer: str, handler: BatchHandler) -> _StreamSubscription:
        return await self._subscribe(_StreamSubscription(self, event_types, consumer, handler, one_at_a_time=False))

    async def _subscribe(self, subscription: _StreamSubscription) -> _StreamSubscription:
        consumer = subscription.group
        for event_type in subscription.event_types:
            await self._ensure_group(stream_of(event_type), consumer)
        subscription.task = asyncio.create_task(self._consume(subscription), name=f"consumer-{consumer}")
        self._subscriptions.append(subscription)
        return subscription

    def dead_letters(self, consumer: str) -> list[Envelope]:
        return list(self._dead.get(consumer, []))

    async def _ensure_group(self, stream: str, group: str) -> None:
        try:
            await self._redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _consume(self, sub: _StreamSubscription) -> None:
        streams: dict[KeyT, StreamIdT] = {stream_of(t): ">" for t in sub.event_types}
        next_claim = 0.0
        while not sub.closing:
            try:
                if time.monotonic() >= next_claim:
                    await self._reclaim(sub)
                    await self._measure_lag(sub)
                    next_claim = time.monotonic() + self.redelivery_ms / 2000
                answer = cast(
                    _ReadAnswer, await self._redis.xreadgroup(sub.group, sub.name, streams, count=64, block=self._block_ms)
                )
                for stream, messages in answer or []:
                    for batch in [[m] for m in messages] if sub.one_at_a_time else [messages]:
                        await self._handle(sub, stream.decode(), batch)
            except asyncio.CancelledError:
                raise
            except _REDIS_DOWN:
                log.warning("redis unreachable; consumer %s retries", sub.group)
                await asyncio.sleep(0.5)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # the stream was deleted (e.g. Redis restarted empty)
                    for event_type in sub.event_types:
                        await self._ensure_group(stream_of(event_type), sub.group)
                else:
                    raise

    async def _handle(self, sub: _StreamSubscription, stream: str, messages: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        if sub.closing:  # redis-py may swallow the cancellation of a read: what it read stays pending
            return
        envelopes = [_envelope(fields) for _, fields in messages]
        mine = [e for e in envelopes if meant_for(e, sub.group)]  # not one re-delivered to another group
        try:
            if mine:
                await sub.handler(mine)
        except Exception as failed:  # noqa: BLE001 - left pending: XAUTOCLAIM redelivers it later
            log.exception("%s failed on %s; it stays pending", sub.group, envelopes[0].event_id)
            await self._remember_error(sub.group, messages, error_text(failed))
            return
        crash_point(f"consumer.{sub.group}.before_ack")  # one consumer (context) crashes, as one would
        await self._redis.xack(stream, sub.group, *(message_id for message_id, _ in messages))

    async def _measure_lag(self, sub: _StreamSubscription) -> None:
        """Entries of the group's streams not yet delivered, plus those delivered and not acked."""
        behind = 0
        for event_type in sub.event_types:
            for group in await self._redis.xinfo_groups(stream_of(event_type)):
                name = group["name"]
                if (name.decode() if isinstance(name, bytes) else name) == sub.group:
                    behind += int(group.get("lag") or 0) + int(group.get("pending") or 0)
        self._behind[(sub.group, sub.name)] = behind
        # A context may read its streams through several subscriptions (singles and batches): its lag is their sum.
        CONSUMER_LAG.labels(sub.group).set(sum(n for (group, _), n in self._behind.items() if group == sub.group))
        if behind > self._lag_alarm:
            log.error(
                "consumer group %s is %d events behind on %s; its streams are kept until it catches up",
                sub.group,
                behind,
                ", ".join(sub.event_types),
            )

    async def _reclaim(self, sub: _StreamSubscription) -> None:
        for event_type in sub.event_types:
            stream = stream_of(event_type)
            _, claimed, _ = await self._redis.xautoclaim(stream, sub.group, sub.name, self.redelivery_ms, "0-0", count=64)
            for message_id, fields in claimed:
                if fields is None:
                    continue
                pending = await self._redis.xpending_range(stream, sub.group, message_id, message_id, 1)
                if pending and int(pending[0]["times_delivered"]) > MAX_ATTEMPTS:
                    await self._dead_letter(sub, stream, message_id, fields)
                else:
                    await self._handle(sub, stream, [(message_id, fields)])

    async def _remember_error(self, group: str, messages: list[tuple[bytes, dict[bytes, bytes]]], error: str) -> None:
        """The last error of each entry, for its dead letter: the delivery that gives up on it may
        happen in another replica, which never saw it."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for message_id, _ in messages:
                    pipe.set(f"{ERROR_PREFIX}{group}:{message_id.decode()}", error, ex=ERROR_TTL_SECONDS)
                await pipe.execute()
        except _REDIS_DOWN:
            log.warning("could not keep the error of %s's failed delivery", group)

    async def _dead_letter(self, sub: _StreamSubscription, stream: str, message_id: bytes, fields: dict[bytes, bytes]) -> None:
        envelope = _envelope(fields)
        error_key = f"{ERROR_PREFIX}{sub.group}:{message_id.decode()}"
        if self.sink is not None:  # kept before the entry is acknowledged; if keeping fails, it stays pending
            error = await self._redis.get(error_key)
            text = error.decode() if isinstance(error, bytes) else str(error or f"its handler failed {MAX_ATTEMPTS} times")
            try:
                await self.sink(sub.group, [envelope], text)
            except Exception:  # noqa: BLE001 - left pending: the next reclaim tries to keep it again
                log.exception("%s could not keep dead letter %s; it stays pending", sub.group, envelope.event_id)
                return
        dead: dict[FieldT, EncodableT] = {key: value for key, value in fields.items()}
        dead |= {b"stream": stream, b"message_id": message_id}
        await self._redis.xadd(f"{DLQ_PREFIX}{sub.group}", dead, maxlen=self._max_len, approximate=True)
        await self._redis.xack(stream, sub.group, message_id)
        await self._redis.delete(error_key)
        self._dead.setdefault(sub.group, []).append(envelope)
        DEAD_LETTERED.labels(sub.group).inc()
        log.error("%s dead-lettered %s %s after %d attempts", sub.group, envelope.event_type, envelope.event_id, MAX_ATTEMPTS)
