"""OpenTelemetry tracing across hops: W3C trace context in gRPC metadata and in event headers.

Every call gets a real trace id from the SDK's tracer provider (logged with it, propagated to the
next hop). Spans are recorded and exported only when OGPGY_TRACES=console asks for it, since no
collector is assumed; otherwise they are sampled out, which keeps the ids and costs far less.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
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
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), sampler=ParentBased(ALWAYS_ON if exporting else ALWAYS_OFF)
    )
    if exporting:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


@contextmanager
def span(name: str, carrier: Mapping[str, str], kind: SpanKind) -> Iterator[Span]:
    """A span continuing the trace found in `carrier` (or a new trace)."""
    with _tracer.start_as_current_span(name, context=propagate.extract(carrier), kind=kind) as current:
        yield current


class ServerSpan:
    """The span of one incoming call, made current for the handler.

    The same as `span(...)`, without the layers of generator context managers: it runs on every
    call, so its cost shows in every figure (about a third of the generic path's).
    """

    __slots__ = ("_context", "_span", "_token")

    def __init__(self, name: str, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        parent = None
        for key, _ in metadata:
            if key == "traceparent":
                parent = propagate.extract({k: v for k, v in metadata if isinstance(v, str)})
                break
        self._span = _tracer.start_span(name, context=parent, kind=SpanKind.SERVER)
        self._context = trace.set_span_in_context(self._span)
        self._token = otel_context.attach(self._context)

    def end(self) -> None:
        """Ends the span; restores the context only where it was attached. A streaming handler
        abandoned by its caller is closed later by asyncio's finalizer, in another context: there
        the token cannot be reset (OpenTelemetry logged "Failed to detach context"), and need not
        be, since every call runs in a task of its own whose context ends with it. The finalizer's
        context may even hold the same value (a copy of the call's), so the reset is tried, and
        its refusal is that case."""
        if otel_context.get_current() is self._context:
            _restore(self._token)
        self._span.end()


def _restore(token: contextvars.Token[otel_context.Context]) -> None:
    """What otel_context.detach does, without its error log for a token of another Context."""
    with contextlib.suppress(ValueError):  # made in another Context: nothing to restore here
        token.var.reset(token)


def inject(carrier: MutableMapping[str, str]) -> None:
    """Writes the current trace context (traceparent) into `carrier`."""
    propagate.inject(carrier)


def current_ids() -> tuple[str, str]:
    """(trace id, span id) of the current span, hex; empty when there is none."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
