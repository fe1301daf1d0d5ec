"""Prometheus metrics of every server, served on /metrics by `serve_metrics`.

Names follow the conventions of go-grpc-prometheus, which dashboards expect.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

HANDLED = Counter(
    "grpc_server_handled_total", "RPCs completed on the server, by status code", ["grpc_service", "grpc_method", "grpc_code"]
)
HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "Time to handle an RPC on the server",
    ["grpc_service", "grpc_method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BREAKER_STATE = Gauge("ogpgy_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open", ["breaker"])
OUTBOX_LAG = Gauge("ogpgy_outbox_lag_events", "Events in a context's outbox not yet published", ["context"])
CONSUMER_LAG = Gauge(
    "ogpgy_event_consumer_lag_events", "Events delivered to a consumer group and not yet acknowledged", ["consumer"]
)


class RpcMetrics:
    """One method's metric children, looked up once: labels() takes a lock and a dict lookup, and
    this runs on every call."""

    __slots__ = ("_handled", "_handling", "_name", "_service")

    def __init__(self, method: str) -> None:
        self._service, _, self._name = method.lstrip("/").partition("/")
        self._handling = HANDLING.labels(self._service, self._name)
        self._handled: dict[str, Any] = {}

    def observe(self, code: str, seconds: float) -> None:
        counter = self._handled.get(code)
        if counter is None:
            counter = self._handled[code] = HANDLED.labels(self._service, self._name, code)
        counter.inc()
        self._handling.observe(seconds)


def gauge_from(gauge: Gauge, label: str, read: Callable[[], float]) -> None:
    """Reads the gauge's value at scrape time (no bookkeeping on the hot path)."""
    gauge.labels(label).set_function(read)


def serve_metrics(port: int, host: str = "127.0.0.1") -> int:
    """Serves /metrics on a thread of its own; returns the port."""
    server, _ = start_http_server(port, addr=host)
    return int(server.server_port)


class CacheCounters(Protocol):
    namespace: str
    stats: Any  # l1_hits, l2_hits, misses


class _CacheCollector(Collector):
    """Cache lookups read from the caches' own counters at scrape time: nothing on the hot path."""

    def __init__(self) -> None:
        self.caches: weakref.WeakSet[Any] = weakref.WeakSet()

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("ogpgy_cache_lookups", "Cache lookups by cache and outcome", labels=["cache", "outcome"])
        for cache in list(self.caches):
            for outcome, value in (
                ("l1_hit", cache.stats.l1_hits),
                ("l2_hit", cache.stats.l2_hits),
                ("miss", cache.stats.misses),
            ):
                family.add_metric([cache.namespace, outcome], value)
        yield family


_CACHES = _CacheCollector()
REGISTRY.register(_CACHES)


def track_cache(cache: CacheCounters) -> None:
    _CACHES.caches.add(cache)
