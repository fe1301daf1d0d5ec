"""Breaker state shared by every instance of a service through Redis, off the event loop's path.

pybreaker's CircuitRedisStorage is synchronous (it would block the loop) and costs two round trips
per call. Here a breaker keeps its state in memory; only state changes travel: each change is
written to a Redis key and published, and every instance applies the others' changes. Calls never
wait for Redis; when Redis is down, instances simply decide alone.
"""

from __future__ import annotations

import asyncio
import json
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from common.ids import random_bytes
from common.resilience.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker

log = logging.getLogger("ogpgy.breaker")
PREFIX = "ogpgy:breaker:"


class SharedBreakerState:
    def __init__(self, breaker: CircuitBreaker, redis_url: str) -> None:
        self._breaker = breaker
        self._redis = aioredis.from_url(redis_url, socket_connect_timeout=1, health_check_interval=5)
        self._instance = random_bytes(8).hex()
        self._applying = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._stopping = False
        self._key = f"{PREFIX}{breaker.name}"
        breaker.listeners.append(self._on_local_change)

    async def start(self) -> None:
        try:
            stored = await self._redis.get(self._key)
            if stored:
                self._apply(json.loads(stored)["state"])
        except (RedisError, OSError):
            log.warning("breaker %s: redis unreachable; starting with local state", self._breaker.name)
        self._listener = asyncio.create_task(self._listen(), name=f"breaker-{self._breaker.name}")

    async def stop(self) -> None:
        self._stopping = True  # redis-py may turn the cancel below into a connection error
        for task in [*self._tasks, *([self._listener] if self._listener else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, *([self._listener] if self._listener else []), return_exceptions=True)
        await self._redis.aclose()

    def _on_local_change(self, name: str, old: str, new: str) -> None:
        if self._applying or new == HALF_OPEN:  # half-open is each instance's own probing
            return
        task = asyncio.get_running_loop().create_task(self._publish(new))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, state: str) -> None:
        message = json.dumps({"state": state, "from": self._instance})
        try:
            await self._redis.set(self._key, message)
            await self._redis.publish(self._key, message)
        except (RedisError, OSError):
            log.warning("breaker %s: could not share state %s", self._breaker.name, state)

    def _apply(self, state: str) -> None:
        if state == self._breaker.state:
            return
        self._applying = True
        try:
            if state == OPEN:
                self._breaker.open()
            elif state == CLOSED:
                self._breaker.close()
        finally:
            self._applying = False

    async def _listen(self) -> None:
        while not self._stopping:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._key)
                    while not self._stopping:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message is not None:
                            data = json.loads(message["data"])
                            if data["from"] != self._instance:
                                self._apply(data["state"])
            except asyncio.CancelledError:
                raise
            except (TimeoutError, RedisError, OSError):
                await asyncio.sleep(0.2)
