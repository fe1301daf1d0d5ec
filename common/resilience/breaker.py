"""A circuit breaker for coroutines, built on pybreaker's state machine.

pybreaker's own `call()` treats a coroutine function's return value (an un-awaited coroutine) as
success and holds an RLock for the whole call. Here every call goes through pybreaker's
`calling()` context manager around the `await`: pybreaker takes its lock only to decide whether
the call may pass and to record the outcome, never across the await, and an exception raised by
the awaited coroutine is recorded as a failure. On top: which errors count (gRPC codes, exception
types), a bound on concurrent probes while half-open, a distinct CircuitOpenError, and state
changes sent to the log and to listeners.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
import pybreaker

from common.errors import Unavailable
from common.observability.metrics import BREAKER_STATE, gauge_from

T = TypeVar("T")
log = logging.getLogger("ogpgy.breaker")

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN
StateListener = Callable[[str, str, str], None]  # (breaker name, old state, new state)

DEFAULT_FAILURE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


class CircuitOpenError(Unavailable):
    """The dependency is considered down: the call was not attempted."""

    def __init__(self, name: str) -> None:
        super().__init__("CIRCUIT_OPEN", f"{name} is unavailable (circuit open); try again later", {"dependency": name})


@dataclass(frozen=True)
class BreakerPolicy:
    fail_max: int = 5
    reset_timeout: float = 30.0
    success_threshold: int = 1
    half_open_probes: int = 1  # calls let through at once while half-open
    failure_codes: frozenset[grpc.StatusCode] = DEFAULT_FAILURE_CODES
    failure_exceptions: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError, OSError)


class _Notifier(pybreaker.CircuitBreakerListener):
    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        old = old_state.name if old_state is not None else ""
        log.warning("circuit %s: %s -> %s", cb.name, old, new_state.name)
        for listener in list(self._breaker.listeners):
            listener(self._breaker.name, old, new_state.name)


_STATE_CODES = {"closed": 0, "half-open": 1, "open": 2}


@dataclass
class CircuitBreaker:
    name: str
    policy: BreakerPolicy = BreakerPolicy()
    listeners: list[StateListener] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._probes = 0
        self._cb = pybreaker.CircuitBreaker(
            fail_max=self.policy.fail_max,
            reset_timeout=self.policy.reset_timeout,
            success_threshold=self.policy.success_threshold,
            exclude=[lambda exc: not self.counts_as_failure(exc)],
            listeners=[_Notifier(self)],
            name=self.name,
            throw_new_error_on_trip=False,
        )
        gauge_from(BREAKER_STATE, self.name, lambda: _STATE_CODES.get(str(self._cb.current_state), -1))

    @property
    def state(self) -> str:
        return str(self._cb.current_state)

    def counts_as_failure(self, exc: BaseException) -> bool:
        if isinstance(exc, asyncio.CancelledError):
            return False  # the caller went away; says nothing about the dependency
        if isinstance(exc, grpc.aio.AioRpcError):
            return exc.code() in self.policy.failure_codes
        return isinstance(exc, self.policy.failure_exceptions)

    def _reset_elapsed(self) -> bool:
        opened_at = self._cb._state_storage.opened_at
        return opened_at is None or datetime.now(UTC) >= opened_at + timedelta(seconds=self.policy.reset_timeout)

    def allows_calls(self) -> bool:
        """Whether a call now would be attempted (closed, or ready to probe)."""
        state = self.state
        return (
            state == CLOSED
            or (state == OPEN and self._reset_elapsed())
            or (state == HALF_OPEN and self._probes < self.policy.half_open_probes)
        )

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Awaits `fn(*args, **kwargs)` if the circuit lets it through; CircuitOpenError if not."""
        probing = self.state != CLOSED
        if probing:
            if not self.allows_calls():
                raise CircuitOpenError(self.name)
            self._probes += 1
        try:
            with self._cb.calling():
                return await fn(*args, **kwargs)
        except pybreaker.CircuitBreakerError as exc:
            raise CircuitOpenError(self.name) from exc
        finally:
            if probing:
                self._probes -= 1

    # Manual control, used by shared state and by operators.
    def open(self) -> None:
        self._cb.open()

    def close(self) -> None:
        self._cb.close()
