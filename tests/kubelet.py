"""The kubelet's probes, run as the kubelet runs them, for the pods of tests/pods.py.

A built-in gRPC probe dials the pod's IP at the port the probe names, in plaintext: Kubernetes
documents that built-in probes take no authentication parameters (no client certificate, no
token). It asks grpc.health.v1.Health/Check for the probe's service, within timeoutSeconds, and
only SERVING is a success. Each probe runs every periodSeconds after initialDelaySeconds; the
startup probe first, alone; failureThreshold failures in a row of the startup or liveness probe
restart the container, of the readiness probe take the pod out of its Services; a container
that exits is started again. It probes for as long as the test runs, not only until the pods are
first ready. Nothing here is kinder than that: a probe that needs a certificate fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.pods import Node, Pod

SERVING = health_pb2.HealthCheckResponse.SERVING


async def grpc_probe(address: str, probe: dict[str, Any]) -> bool:
    """One attempt of a gRPC probe on the pod at `address`."""
    grpc = probe["grpc"]
    target = f"ipv4:{address}:{grpc['port']}"
    try:
        async with aio.insecure_channel(target) as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=grpc.get("service", "")), timeout=probe.get("timeoutSeconds", 1)
            )
    except aio.AioRpcError:
        return False
    return answer.status == SERVING


async def http_probe(address: str, probe: dict[str, Any]) -> bool:
    """One attempt of an httpGet probe: a GET of the path on the port, in plaintext, passed by a
    status from 200 to 399 within timeoutSeconds (what the kubelet does)."""
    get = probe["httpGet"]
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, get["port"]), probe.get("timeoutSeconds", 1))
        try:
            writer.write(f"GET {get.get('path', '/')} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode())
            status = await asyncio.wait_for(reader.readline(), probe.get("timeoutSeconds", 1))
        finally:
            writer.close()
    except (OSError, TimeoutError):
        return False
    parts = status.split()
    return len(parts) > 1 and parts[1].isdigit() and 200 <= int(parts[1]) < 400


async def probe_once(address: str, probe: dict[str, Any]) -> bool:
    return await (http_probe(address, probe) if "httpGet" in probe else grpc_probe(address, probe))


@dataclass
class _Probing:
    """One pod's probes as the kubelet tracks them since its container (re)started."""

    started_at: float
    started: bool = False
    ready: bool = False
    failures: dict[str, int] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)


class Kubelet:
    """Probes the pods of `node` at their probes' periods, for as long as it runs (`async with`),
    and restarts what the probes condemn or what exits (restartPolicy Always)."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._state = {pod.name: _Probing(time.monotonic()) for pod in node.pods}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Kubelet:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def ready(self, pod: Pod) -> bool:
        return self._state[pod.name].ready

    async def until_ready(self, within: float) -> None:
        """Waits until every pod is ready as the probes say; fails after `within` seconds."""
        deadline = time.monotonic() + within
        while not all(self.ready(pod) for pod in self._node.pods):
            assert self._task is not None and not self._task.done(), "the kubelet stopped"
            waiting = [p.name for p in self._node.pods if not self.ready(p)]
            assert time.monotonic() < deadline, f"not ready within {within} s (as the kubelet probes): {waiting}"
            await asyncio.sleep(0.1)

    async def _run(self) -> None:
        while True:
            for pod in self._node.pods:
                if pod.proc is not None and pod.proc.poll() is not None:  # exited: started again
                    self._restart(pod)
            await asyncio.gather(*(self._tick(pod) for pod in self._node.pods))
            await asyncio.sleep(0.1)

    def _restart(self, pod: Pod) -> None:
        self._node.restart(pod)
        self._state[pod.name] = _Probing(time.monotonic())  # its probes start over, startup first

    async def _tick(self, pod: Pod) -> None:
        state = self._state[pod.name]
        kinds = ["startupProbe"] if not state.started and "startupProbe" in pod.probes else ["livenessProbe", "readinessProbe"]
        for kind in kinds:
            probe = pod.probes.get(kind)
            if probe is None:  # a container with no probe of a kind passes it while it runs
                state.started = state.started or kind == "startupProbe"
                state.ready = state.ready or kind == "readinessProbe"
                continue
            now = time.monotonic()
            if now < state.due.get(kind, state.started_at + probe.get("initialDelaySeconds", 0)):
                continue
            state.due[kind] = now + probe.get("periodSeconds", 10)
            self._judge(pod, state, kind, probe, await probe_once(pod.address, probe))

    def _judge(self, pod: Pod, state: _Probing, kind: str, probe: dict[str, Any], passed: bool) -> None:
        if passed:
            state.failures[kind] = 0
            state.started = state.started or kind == "startupProbe"
            state.ready = state.ready or kind == "readinessProbe"
            return
        state.failures[kind] = state.failures.get(kind, 0) + 1
        if state.failures[kind] < probe.get("failureThreshold", 3):
            return
        if kind == "readinessProbe":
            state.ready = False  # out of its Services until the probe passes again
            return
        self._restart(pod)  # a startup or liveness probe failed failureThreshold times in a row
