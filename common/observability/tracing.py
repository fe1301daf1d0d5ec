"""OpenTelemetry tracing across hops: W3C trace context in gRPC metadata and in event headers.

Every call gets a real trace id from the SDK's tracer provider (logged with it, propagated to the
next hop). Spans are recorded and exported only when OGPGY_TRACES=console asks for it, since no
collector is assumed; otherwise they are sampled out, which keeps the ids and costs far less.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace import Span, SpanKind

_tracer = trace.get_tracer("ogpgy")


def setup_tracing(service_name: str) -> None:
    """Installs the process's tracer provider (once; later calls keep the first)."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    exporting = os.environ.get("OGPGY_TRACES") == "console"
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                              sampler=ParentBased(ALWAYS_ON if exporting else ALWAYS_OFF))  # fmt: skip
    if exporting:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


def _parent(carrier: Mapping[str, str]) -> Context:
    return propagate.extract(carrier)


def metadata_carrier(metadata: Sequence[tuple[str, str | bytes]]) -> dict[str, str]:
    return {key: value for key, value in metadata if isinstance(value, str)}


@contextmanager
def span(name: str, carrier: Mapping[str, str], kind: SpanKind) -> Iterator[Span]:
    """A span continuing the trace found in `carrier` (or a new trace)."""
    with _tracer.start_as_current_span(name, context=_parent(carrier), kind=kind) as current:
        yield current


def inject(carrier: MutableMapping[str, str]) -> None:
    """Writes the current trace context (traceparent) into `carrier`."""
    propagate.inject(carrier)


def current_ids() -> tuple[str, str]:
    """(trace id, span id) of the current span, hex; empty when there is none."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
