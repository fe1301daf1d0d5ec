"""The asyncio circuit breaker: what counts as failure, opening, half-open probes, retries."""

from __future__ import annotations

import asyncio

import grpc
import pybreaker
import pytest
from grpc import aio

from common.resilience.breaker import CLOSED, HALF_OPEN, OPEN, BreakerPolicy, CircuitBreaker, CircuitOpenError
from common.resilience.retry import retry


def rpc_error(code: grpc.StatusCode) -> aio.AioRpcError:
    return aio.AioRpcError(code, aio.Metadata(), aio.Metadata(), details=code.name)


class Dependency:
    def __init__(self) -> None:
        self.calls = 0
        self.fail_with: BaseException | None = None

    async def __call__(self) -> str:
        self.calls += 1
        await asyncio.sleep(0)
        if self.fail_with is not None:
            raise self.fail_with
        return "ok"


async def test_bare_pybreaker_counts_a_failing_coroutine_as_success() -> None:
    """Why the wrapper exists: pybreaker.call() never awaits, so it never sees the failure."""
    dep = Dependency()
    dep.fail_with = rpc_error(grpc.StatusCode.UNAVAILABLE)
    bare = pybreaker.CircuitBreaker(fail_max=1)
    coroutine = bare.call(dep)
    assert bare.current_state == CLOSED and bare.fail_counter == 0
    with pytest.raises(aio.AioRpcError):
        await coroutine


async def test_failing_coroutines_open_the_circuit_after_fail_max() -> None:
    dep, changes = Dependency(), []
    breaker = CircuitBreaker("net", BreakerPolicy(fail_max=3, reset_timeout=60), [lambda n, o, s: changes.append((o, s))])
    dep.fail_with = rpc_error(grpc.StatusCode.UNAVAILABLE)
    for _ in range(3):
        with pytest.raises(aio.AioRpcError):
            await breaker.call(dep)
    assert breaker.state == OPEN and changes == [("closed", "open")]
    with pytest.raises(CircuitOpenError):
        await breaker.call(dep)
    assert dep.calls == 3, "no call reaches the dependency while open"


async def test_timeouts_count_and_excluded_codes_do_not() -> None:
    dep = Dependency()
    breaker = CircuitBreaker("net", BreakerPolicy(fail_max=2, reset_timeout=60))
    for code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION) * 3:
        dep.fail_with = rpc_error(code)
        with pytest.raises(aio.AioRpcError):
            await breaker.call(dep)
    assert breaker.state == CLOSED, "the caller's mistakes say nothing about the dependency's health"
    dep.fail_with = rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED)
    with pytest.raises(aio.AioRpcError):
        await breaker.call(dep)
    dep.fail_with = TimeoutError()
    with pytest.raises(TimeoutError):
        await breaker.call(dep)
    assert breaker.state == OPEN


async def test_half_open_admits_bounded_probes_and_one_failure_reopens() -> None:
    dep = Dependency()
    breaker = CircuitBreaker("net", BreakerPolicy(fail_max=1, reset_timeout=0.05, half_open_probes=1))
    dep.fail_with = rpc_error(grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(aio.AioRpcError):
        await breaker.call(dep)
    assert breaker.state == OPEN
    await asyncio.sleep(0.06)
    gate = asyncio.Event()

    async def slow_probe() -> str:
        await gate.wait()
        raise rpc_error(grpc.StatusCode.UNAVAILABLE)

    probe = asyncio.ensure_future(breaker.call(slow_probe))
    await asyncio.sleep(0)
    assert breaker.state == HALF_OPEN
    with pytest.raises(CircuitOpenError):
        await breaker.call(dep)  # a second concurrent probe is refused
    gate.set()
    with pytest.raises(aio.AioRpcError):
        await probe
    assert breaker.state == OPEN, "one failure while half-open re-opens"
    await asyncio.sleep(0.06)
    dep.fail_with = None
    assert await breaker.call(dep) == "ok" and breaker.state == CLOSED


async def test_no_lock_is_held_across_the_await() -> None:
    """Many slow calls in flight at once on one breaker: they overlap instead of queueing."""
    breaker = CircuitBreaker("net")
    running, peak = 0, 0

    async def slow() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    await asyncio.gather(*(breaker.call(slow) for _ in range(50)))
    assert peak == 50


async def test_retry_backs_off_and_gives_up() -> None:
    dep = Dependency()
    dep.fail_with = rpc_error(grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(aio.AioRpcError):
        await retry(dep, retryable=lambda e: True, attempts=3, base_delay=0.001)
    assert dep.calls == 3
    dep.calls, dep.fail_with = 0, ValueError("not retryable")
    with pytest.raises(ValueError):
        await retry(dep, retryable=lambda e: isinstance(e, aio.AioRpcError), attempts=3)
    assert dep.calls == 1
