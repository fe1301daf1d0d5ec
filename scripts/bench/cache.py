"""Cache tiers: L1 hit (ns), L2 hit p50/p99 (µs) beside a raw Redis GET measured in the same run,
and invalidation latency across two instances (p50/p99, ms).

Usage: .venv/bin/python scripts/bench/cache.py [--samples 5000]
Starts its own redis-server on a free loopback port.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

import redis.asyncio as aioredis  # noqa: E402

from common.cache.codecs import TextCodec  # noqa: E402
from common.cache.multilevel import CachePolicy, MultiLevelCache  # noqa: E402
from tests.servers import RedisServer  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def l1_hit_ns(samples: int) -> float:
    cache = MultiLevelCache("bench-l1", TextCodec())
    await cache.get("k", lambda: asyncio.sleep(0, "v"))
    rounds = samples * 20
    started = time.perf_counter_ns()
    for _ in range(rounds):
        await cache.get("k", _never)
    return (time.perf_counter_ns() - started) / rounds


async def _never() -> str:
    raise AssertionError("a hit must not load")


async def l2_and_raw(url: str, samples: int) -> tuple[list[float], list[float]]:
    """L2 hit = a get that misses L1 (TTL ~0) and finds the value in Redis."""
    cache = MultiLevelCache("bench-l2", TextCodec(), redis_url=url, policy=CachePolicy(l1_size=1, l1_ttl=1e-9, jitter=0))
    await cache.get("warm", lambda: asyncio.sleep(0, "v"))
    raw = aioredis.from_url(url)
    await raw.set("raw-key", "v")
    l2, direct = [], []
    for _ in range(samples):  # interleaved, so both see the same machine
        started = time.perf_counter()
        await cache.get("warm", _never)
        l2.append((time.perf_counter() - started) * 1e6)
        started = time.perf_counter()
        await raw.get("raw-key")
        direct.append((time.perf_counter() - started) * 1e6)
    await cache.stop()
    await raw.aclose()
    return l2, direct


async def invalidation_ms(url: str, samples: int) -> list[float]:
    """Instance A invalidates; how long until instance B has dropped its L1 copy."""
    a = MultiLevelCache("bench-inv", TextCodec(), redis_url=url)
    b = MultiLevelCache("bench-inv", TextCodec(), redis_url=url)
    await a.start()
    await b.start()
    await asyncio.sleep(0.3)
    latencies = []
    for i in range(samples):
        key = f"k{i}"
        await b.get(key, lambda: asyncio.sleep(0, "v"))
        received = b.stats.invalidations_received
        started = time.perf_counter()
        await a.invalidate(key)
        while b.stats.invalidations_received == received:  # noqa: ASYNC110 - another instance, told through Redis
            await asyncio.sleep(0)
        latencies.append((time.perf_counter() - started) * 1000)
    await a.stop()
    await b.stop()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    args = parser.parse_args()
    redis = RedisServer()
    redis.start()
    try:
        l1 = asyncio.run(l1_hit_ns(args.samples))
        l2, raw = asyncio.run(l2_and_raw(redis.url, args.samples))
        inv = asyncio.run(invalidation_ms(redis.url, min(args.samples, 1000)))
    finally:
        redis.stop()
    print(f"{'measure':<34} {'p50':>10} {'p99':>10}")
    print("-" * 56)
    print(f"{'L1 hit (ns, mean)':<34} {l1:>10.0f} {'':>10}")
    print(f"{'L2 hit (µs)':<34} {pct(l2, 0.5):>10.1f} {pct(l2, 0.99):>10.1f}")
    print(f"{'raw Redis GET (µs)':<34} {pct(raw, 0.5):>10.1f} {pct(raw, 0.99):>10.1f}")
    print(f"{'L2 hit / raw GET (p50)':<34} {pct(l2, 0.5) / pct(raw, 0.5):>10.2f}x")
    print(f"{'invalidation across instances (ms)':<34} {pct(inv, 0.5):>10.2f} {pct(inv, 0.99):>10.2f}")
    print(f"{'(mean invalidation ms)':<34} {statistics.mean(inv):>10.2f}")


if __name__ == "__main__":
    main()
