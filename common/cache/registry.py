"""The Caches component: makes MultiLevelCaches from the settings and runs their lifecycle."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, TypeVar

from common.cache.multilevel import CachePolicy, Codec, MultiLevelCache
from common.config import Settings
from common.di import BaseComponent, og_component

V = TypeVar("V")


@og_component()
class Caches(BaseComponent):
    """L2 and invalidation go through Redis when `settings.redis_url` is set; otherwise L1 only."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._caches: list[MultiLevelCache[Any]] = []

    def create(self, namespace: str, codec: Codec[V], policy: CachePolicy | None = None) -> MultiLevelCache[V]:
        policy = policy or CachePolicy()
        if not self._settings.cache_enabled:
            policy = replace(policy, enabled=False)
        cache: MultiLevelCache[V] = MultiLevelCache(namespace, codec, redis_url=self._settings.redis_url, policy=policy)
        self._caches.append(cache)
        return cache

    async def start(self) -> None:
        for cache in self._caches:
            await cache.start()

    async def shutdown(self) -> None:
        for cache in self._caches:
            await cache.stop()
