"""OpenTelemetry tracing across hops: W3C trace context in gRPC metadata and in event headers.

Every call gets a real trace id from the SDK's tracer provider (logged with it, propagated to the
next hop). Spans are exported only when the standard variables ask for it (off by default, since
no collector is assumed): OTEL_TRACES_EXPORTER=otlp sends them over OTLP/HTTP as
OTEL_EXPORTER_OTLP_ENDPOINT (and the other OTEL_EXPORTER_OTLP_* variables) say, =console prints
them; OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and OTEL_BSP_* apply as
usual, and OTEL_SDK_DISABLED=true turns it all off. Without an exporter, spans are sampled out,
which keeps the ids and costs far less.

Spans follow the OpenTelemetry semantic conventions: SERVER spans for calls served and CLIENT
spans for calls made (rpc.system, rpc.service, rpc.method, rpc.grpc.status_code; the span status
is an error when the code means one on that side), PRODUCER spans where an event is written to
the outbox and CONSUMER spans where it is handled (messaging.*).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

_tracer = trace.get_tracer("ogpgy")
# The codes that make a span an error (semantic conventions for gRPC): any but OK for a client;
# for a server only those that say the server failed, not that the caller erred.
_SERVER_ERRORS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"})
_CODE_NUMBERS = {code.name: code.value[0] for code in grpc.StatusCode}
MESSAGING_SYSTEM = "ogpgy.events"  # the bank's event bus (an outbox relayed to Redis Streams or kept in memory)


def _span_processor() -> SpanProcessor | None:
    """The exporter the standard variables ask for; None: spans are not exported."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "none").lower()
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # only when asked for

        return BatchSpanProcessor(OTLPSpanExporter())
    if exporter == "console":
        return SimpleSpanProcessor(ConsoleSpanExporter())
    return None


def setup_tracing(service_name: str) -> None:
    """Installs the process's tracer provider (once; later calls keep the first)."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    processor = _span_processor()
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    # Exporting: the sampler OTEL_TRACES_SAMPLER names (parent-based, always on, by default).
    provider = TracerProvider(resource=Resource.create(attributes), sampler=None if processor else ParentBased(ALWAYS_OFF))
    if processor is not None:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)


def _rpc_attributes(method: str) -> tuple[str, dict[str, str]]:
    """A call's span name ("package.Service/Method") and its rpc.* attributes."""
    name = method.lstrip("/")
    service, _, short = name.partition("/")
    return name, {"rpc.system": "grpc", "rpc.service": service, "rpc.method": short}


def _end_rpc(current: Span, code: str, errors: frozenset[str] | None) -> None:
    """Records the call's status code; the span status is an error for the codes in `errors`
    (None: every code but OK)."""
    if current.is_recording():
        current.set_attribute("rpc.grpc.status_code", _CODE_NUMBERS.get(code, 2))
        if code != "OK" and (errors is None or code in errors):
            current.set_status(Status(StatusCode.ERROR, code))
    current.end()


@contextmanager
def consuming(consumer: str, event_type: str, count: int, carrier: Mapping[str, str]) -> Iterator[Span]:
    """A CONSUMER span around handling `count` events of `event_type`, continuing the trace their
    producer's span put into `carrier` (or a new trace)."""
    attributes: dict[str, str | int] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "process",
        "messaging.destination.name": event_type,
        "messaging.consumer.group.name": consumer,
        "messaging.batch.message_count": count,
    }
    context = propagate.extract(carrier)
    with _tracer.start_as_current_span(
        f"process {event_type}", context=context, kind=SpanKind.CONSUMER, attributes=attributes
    ) as current:
        yield current


class ServerSpan:
    """The span of one incoming call, made current for the handler.

    The same as `span(...)`, without the layers of generator context managers: it runs on every
    call, so its cost shows in every figure (about a third of the generic path's).
    """

    __slots__ = ("_context", "_span", "_token")

    def __init__(self, method: str, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        parent = None
        for key, _ in metadata:
            if key == "traceparent":
                parent = propagate.extract({k: v for k, v in metadata if isinstance(v, str)})
                break
        name, attributes = _rpc_attributes(method)
        self._span = _tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        self._context = trace.set_span_in_context(self._span)
        self._token = otel_context.attach(self._context)

    def end(self, code: str) -> None:
        """Ends the span with the call's status code (its name); restores the context only where
        it was attached. A streaming handler
        abandoned by its caller is closed later by asyncio's finalizer, in another context: there
        the token cannot be reset (OpenTelemetry logged "Failed to detach context"), and need not
        be, since every call runs in a task of its own whose context ends with it. The finalizer's
        context may even hold the same value (a copy of the call's), so the reset is tried, and
        its refusal is that case."""
        if otel_context.get_current() is self._context:
            _restore(self._token)
        _end_rpc(self._span, code, _SERVER_ERRORS)


class ClientSpan:
    """The span of one outgoing call: current while the call's metadata is written (so the
    callee's span is its child), ended when the call ends."""

    __slots__ = ("_span",)

    def __init__(self, method: str) -> None:
        name, attributes = _rpc_attributes(method)
        self._span = _tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)

    @contextmanager
    def current(self) -> Iterator[None]:
        with trace.use_span(self._span, end_on_exit=False):
            yield

    def end(self, code: str) -> None:
        _end_rpc(self._span, code, None)


@contextmanager
def producing(event_type: str, carrier: MutableMapping[str, str]) -> Iterator[None]:
    """A PRODUCER span around writing an event; its context goes into `carrier` (the event's
    headers), so that the consumers' spans continue the trace from it."""
    attributes = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "send",
        "messaging.destination.name": event_type,
    }
    with _tracer.start_as_current_span(f"send {event_type}", kind=SpanKind.PRODUCER, attributes=attributes):
        propagate.inject(carrier)
        yield


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
