"""MultiLevelCache: L1 cachetools (bounded, TTL with jitter), L2 Redis (TTL, namespaced
keys), read-through with single-flight per key, negative caching, and invalidation that drops L1
and L2 here and tells every other instance (Redis pub/sub) to drop its L1 copy.

A read never fails because of the cache: Redis errors and timeouts fall back to L1 and the source,
and a circuit breaker (pybreaker) stops calling Redis while it is down. When the invalidation
channel is lost, L1 is cleared on reconnect, since invalidations may have been missed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

import pybreaker
import redis.asyncio as aioredis
from cachetools import TLRUCache
from redis.exceptions import RedisError

from common.ids import random_bytes
from common.observability.metrics import track_cache

V = TypeVar("V")
log = logging.getLogger("ogpgy.cache")


class _Absent(enum.Enum):
    """The source said "no such thing": cached too (negative caching)."""

    ABSENT = enum.auto()


_ABSENT: Final = _Absent.ABSENT
_NEGATIVE_L2 = b"\x00absent"
CHANNEL_PREFIX = "ogpgy:cache-invalidate:"
KEY_PREFIX = "ogpgy:cache:"


class Codec(Protocol[V]):
    def encode(self, value: V) -> bytes: ...

    def decode(self, data: bytes) -> V: ...


@dataclass
class CacheStats:
    l1_hits: int = 0
    l2_hits: int = 0
    misses: int = 0
    loads: int = 0
    l2_errors: int = 0
    invalidations_received: int = 0


@dataclass(frozen=True)
class CachePolicy:
    l1_size: int = 10_000
    l1_ttl: float = 30.0
    l2_ttl: float = 300.0
    negative_ttl: float = 5.0
    jitter: float = 0.1  # ±10 % on every TTL, so entries made together do not expire together
    redis_timeout: float = 0.05  # a slow Redis must not slow reads down
    breaker_fail_max: int = 3
    breaker_reset_timeout: float = 5.0
    enabled: bool = True  # False: every get goes to the source (for comparisons and diagnosis)


@dataclass
class _Fill(Generic[V]):
    """A load under way for one key, shared by its concurrent readers. An invalidation meanwhile
    marks it, so that its (possibly stale) result is answered but not stored. It lives only while
    the load runs: nothing is kept per key after that (a counter per invalidated key grew without
    bound), and it holds its task, which asyncio keeps only weakly."""

    future: asyncio.Future[V | _Absent]
    task: asyncio.Task[None] | None = None
    invalidated: bool = False


class MultiLevelCache(Generic[V]):
    def __init__(self, namespace: str, codec: Codec[V], *, redis_url: str = "", policy: CachePolicy | None = None) -> None:
        policy = policy or CachePolicy()
        self.namespace = namespace
        self.policy = policy
        self.stats = CacheStats()
        track_cache(self)
        self._codec = codec
        self._l1: TLRUCache[str, V | _Absent] = TLRUCache(maxsize=policy.l1_size, ttu=self._l1_expiry, timer=time.monotonic)
        self._inflight: dict[str, _Fill[V]] = {}
        self._instance = random_bytes(8).hex()
        self._redis = (
            aioredis.from_url(redis_url, socket_timeout=policy.redis_timeout, socket_connect_timeout=policy.redis_timeout)
            if redis_url
            else None
        )
        # Subscriptions wait for messages: their connection must not have the short read timeout.
        self._subscriber = aioredis.from_url(redis_url, socket_connect_timeout=1, health_check_interval=5) if redis_url else None
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=policy.breaker_fail_max, reset_timeout=policy.breaker_reset_timeout, name=f"redis-cache-{namespace}"
        )
        self._listener: asyncio.Task[None] | None = None
        self._stopping = False

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._redis is not None:
            self._listener = asyncio.create_task(self._listen(), name=f"cache-invalidations-{self.namespace}")

    async def stop(self) -> None:
        self._stopping = True  # redis-py may turn the cancel below into a connection error
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        for client in (self._redis, self._subscriber):
            if client is not None:
                await client.aclose()

    # --- reads ----------------------------------------------------------------------------------

    async def get(self, key: str, load: Callable[[], Awaitable[V | None]]) -> V | None:
        """The value for `key`: from L1, else L2, else `load()` (once for all concurrent callers)."""
        if not self.policy.enabled:
            return await load()
        try:
            found = self._l1[key]  # one lookup: get() would check expiry twice (~3x slower)
        except KeyError:
            pass
        else:
            self.stats.l1_hits += 1
            return None if found is _ABSENT else found
        fill = self._inflight.get(key)
        if fill is None:
            fill = self._inflight[key] = _Fill(asyncio.get_running_loop().create_future())
            fill.task = asyncio.create_task(self._fill(key, load, fill))
        result = await asyncio.shield(fill.future)
        return None if result is _ABSENT else result

    async def _fill(self, key: str, load: Callable[[], Awaitable[V | None]], fill: _Fill[V]) -> None:
        try:
            cached = await self._from_l2(key)
            if cached is None:
                self.stats.misses += 1
                self.stats.loads += 1
                loaded = await load()
                value: V | _Absent = _ABSENT if loaded is None else loaded
                if not fill.invalidated:
                    await self._to_l2(key, value)
            else:
                self.stats.l2_hits += 1
                value = cached
            if not fill.invalidated:
                self._l1[key] = value
            fill.future.set_result(value)
        except BaseException as exc:  # noqa: BLE001 - the source's error goes to every waiter
            fill.future.set_exception(exc)
        finally:
            self._inflight.pop(key, None)

    def _l1_expiry(self, key: str, value: V | _Absent, now: float) -> float:
        ttl = self.policy.negative_ttl if value is _ABSENT else self.policy.l1_ttl
        return now + self._jittered(ttl)

    def _jittered(self, ttl: float) -> float:
        return ttl * (1 + random.uniform(-self.policy.jitter, self.policy.jitter))

    def _redis_key(self, key: str) -> str:
        return f"{KEY_PREFIX}{self.namespace}:{key}"

    async def _guarded(self, action: Callable[[], Awaitable[object]]) -> object | None:
        """Runs a Redis call through the breaker; any failure is absorbed (None)."""
        if self._redis is None:
            return None
        try:
            with self._breaker.calling():
                return await action()
        except (TimeoutError, RedisError, OSError, pybreaker.CircuitBreakerError) as exc:
            self.stats.l2_errors += 1
            if not isinstance(exc, pybreaker.CircuitBreakerError):
                log.debug("redis cache %s unavailable: %s", self.namespace, exc)
            return None

    async def _from_l2(self, key: str) -> V | _Absent | None:
        redis = self._redis
        if redis is None:
            return None
        data = await self._guarded(lambda: redis.get(self._redis_key(key)))
        if not isinstance(data, bytes):
            return None
        return _ABSENT if data == _NEGATIVE_L2 else self._codec.decode(data)

    async def _to_l2(self, key: str, value: V | _Absent) -> None:
        redis = self._redis
        if redis is None:
            return
        negative = value is _ABSENT
        data = _NEGATIVE_L2 if value is _ABSENT else self._codec.encode(value)
        ttl = self._jittered(self.policy.negative_ttl if negative else self.policy.l2_ttl)
        await self._guarded(lambda: redis.set(self._redis_key(key), data, px=max(1, int(ttl * 1000))))

    # --- invalidation ---------------------------------------------------------------------------

    async def invalidate(self, key: str) -> None:
        """Drops `key` from L1 and L2 and tells every other instance to drop its L1 copy."""
        self._drop_local(key)
        redis = self._redis
        if redis is None:
            return
        await self._guarded(lambda: redis.delete(self._redis_key(key)))
        await self._guarded(lambda: redis.publish(f"{CHANNEL_PREFIX}{self.namespace}", f"{self._instance} {key}"))

    def _drop_local(self, key: str) -> None:
        fill = self._inflight.get(key)
        if fill is not None:
            fill.invalidated = True
        self._l1.pop(key, None)

    def _drop_all_local(self) -> None:
        for fill in self._inflight.values():
            fill.invalidated = True
        self._l1.clear()

    async def _listen(self) -> None:
        """Applies other instances' invalidations; clears L1 after any gap in the subscription."""
        assert self._subscriber is not None
        channel = f"{CHANNEL_PREFIX}{self.namespace}"
        while not self._stopping:
            try:
                async with self._subscriber.pubsub() as pubsub:
                    await pubsub.subscribe(channel)
                    self._drop_all_local()  # (re)subscribed: what was missed meanwhile is unknown
                    while not self._stopping:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message is not None:
                            self._on_invalidation(message["data"])
            except asyncio.CancelledError:
                raise
            except (TimeoutError, RedisError, OSError):
                await asyncio.sleep(0.2)

    def _on_invalidation(self, data: bytes) -> None:
        sender, _, key = data.decode().partition(" ")
        if sender != self._instance:
            self.stats.invalidations_received += 1
            self._drop_local(key)
