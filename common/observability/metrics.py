"""Prometheus metrics of every process, served on /metrics by `serve_metrics`.

RPC metrics are named and labelled as go-grpc-prometheus does (grpc_server_* for calls served,
grpc_client_* for calls made; grpc_type, grpc_service, grpc_method, grpc_code), which dashboards
and alert rules expect (deploy/grafana, deploy/prometheus); the bank's own are ogpgy_*.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

_LABELS = ["grpc_type", "grpc_service", "grpc_method"]
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _Family:
    """One side's (server or client) metrics, named as go-grpc-prometheus names them."""

    def __init__(self, side: str, where: str) -> None:
        self.started = Counter(f"grpc_{side}_started_total", f"RPCs started on the {where}", _LABELS)
        self.handled = Counter(
            f"grpc_{side}_handled_total", f"RPCs completed on the {where}, whatever their status", [*_LABELS, "grpc_code"]
        )
        self.received = Counter(f"grpc_{side}_msg_received_total", f"Stream messages received by the {where}", _LABELS)
        self.sent = Counter(f"grpc_{side}_msg_sent_total", f"Stream messages sent by the {where}", _LABELS)
        self.handling = Histogram(
            f"grpc_{side}_handling_seconds",
            f"Time from the start of an RPC to its end, on the {where}",
            _LABELS,
            buckets=_BUCKETS,
        )


SERVER = _Family("server", "server")
CLIENT = _Family("client", "client")
BREAKER_STATE = Gauge("ogpgy_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open", ["breaker"])
OUTBOX_LAG = Gauge("ogpgy_outbox_lag_events", "Events in a context's outbox not yet published", ["context"])
CONSUMER_LAG = Gauge(
    "ogpgy_event_consumer_lag_events", "Events delivered to a consumer group and not yet acknowledged", ["consumer"]
)
PASSWORD_CHECKS = Counter(
    "ogpgy_password_checks",
    "Password checks asked for: matched or mismatched (each one argon2id hash), or throttled before any hash",
    ["outcome"],
)
BUSINESS_DATES_DUE = Gauge(
    "ogpgy_business_dates_due",
    "Business dates due and not yet closed, as the last close of business or status read found them",
    ["calendar"],
)
CLOSE_OF_BUSINESS_SUCCEEDED = Gauge(
    "ogpgy_close_of_business_last_success_timestamp_seconds",
    "When a close of business last ended with every date due closed (Unix time; nothing due counts)",
    ["calendar"],
)
DEAD_LETTERED = Counter(
    "ogpgy_events_dead_lettered", "Events a consumer gave up on after its retries (kept as dead letters)", ["consumer"]
)
# A counter says letters arrived; an operator needs to know some still wait (an alert on the
# counter's rate goes quiet after the first hour although nobody acted on them).
DEAD_LETTERS_WAITING = Gauge(
    "ogpgy_dead_letters_waiting", "Dead letters of a consumer waiting for an operator to replay or drop them", ["consumer"]
)


def code_label(name: str) -> str:
    """A status code as go-grpc-prometheus labels it (Go's names): OK, Canceled, InvalidArgument, ..."""
    if name == "OK":
        return name
    if name == "CANCELLED":
        return "Canceled"
    return "".join(part.capitalize() for part in name.split("_"))


def grpc_type(client_streaming: bool, server_streaming: bool) -> str:
    return (
        ("bidi_stream" if server_streaming else "client_stream")
        if client_streaming
        else "server_stream"
        if server_streaming
        else "unary"
    )


class RpcMetrics:
    """One method's metric children on one side, looked up once: labels() takes a lock and a dict
    lookup, and this runs on every call."""

    __slots__ = ("_family", "_handled", "_handling", "_labels", "received", "sent", "started")

    def __init__(self, method: str, kind: str = "unary", family: _Family = SERVER) -> None:
        service, _, name = method.lstrip("/").partition("/")
        self._family, self._labels = family, (kind, service, name)
        self.started = family.started.labels(*self._labels)
        self.received = family.received.labels(*self._labels)
        self.sent = family.sent.labels(*self._labels)
        self._handling = family.handling.labels(*self._labels)
        self._handled: dict[str, Any] = {}

    def observe(self, code: str, seconds: float) -> None:
        """The end of a call: `code` is the status code's name (OK, INVALID_ARGUMENT, ...)."""
        counter = self._handled.get(code)
        if counter is None:
            counter = self._handled[code] = self._family.handled.labels(*self._labels, code_label(code))
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
