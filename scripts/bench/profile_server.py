"""Where one call's microseconds go: samples the running bank with py-spy under a steady load and
prints, per layer of the request path, the share of the server's samples and its CPU microseconds
per call.

The bank runs as `ogpgy up` in a process of its own; py-spy (a sampling profiler that attaches
from outside, so the server runs unmodified) records it while closed-loop clients call it. Each
sample is charged to the innermost frame that belongs to a layer; frames of generic helpers
(functools, dataclasses, enum, typing, contextlib) are looked through to their caller. CPU per call
is the server process's user + system time over the measured seconds, divided by the calls.

Usage: .venv/bin/python scripts/bench/profile_server.py [--workload get-customer|payment] [--seconds 8]
                                                [--in-flight 64] [--rate 250] [--top 15] [--raw FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from grpc import aio

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from ogpgy.customer.v1 import customer_service_pb2 as cpb  # noqa: E402
from ogpgy.customer.v1 import customer_service_pb2_grpc as cgrpc  # noqa: E402
from ogpgy.payment.v1 import payment_service_pb2 as ppb  # noqa: E402
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc  # noqa: E402
from scripts.bench.get_customer import bench_onboarding  # noqa: E402
from scripts.bench.harness import Result, bank_command, bank_env, closed_loop, running_server  # noqa: E402
from scripts.bench.payments import funded_accounts  # noqa: E402
from tests.bank_helpers import admin_channel, eur, generous_fraud_rules  # noqa: E402

# Layers of the request path, by where a frame's code lives; the first rule a frame matches wins.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "authentication",
        ("/common/grpc/identity.py", "/common/security/tokens.py", "/common/security/component.py", "/jwt/", "/cryptography/"),
    ),
    ("access policy", ("/common/security/policy.py", "/common/security/context.py")),
    ("cache", ("/common/cache/", "/cachetools/")),
    ("observability", ("/common/observability/", "/opentelemetry/", "/prometheus_client/", "/logging/")),
    ("database (and its thread hops)", ("/common/db/", "/sqlite3/", "/psycopg/", "/psycopg_pool/")),
    (
        "events and background work",
        ("/common/events/", "/common/saga/", "/common/batch/", "/common/periodic.py", "/common/audit.py", "/redis/"),
    ),
    (
        "messages and serialization",
        ("/google/protobuf/", "/api.py", "/common/grpc/convert.py", "/kernel/convert.py", "/common/money.py"),
    ),
    ("our gRPC platform (interceptors, errors)", ("/common/grpc/",)),
    ("use cases and domain", ("/services/", "/kernel/", "/common/")),
    ("grpc.aio", ("/grpc/",)),
    ("asyncio event loop and threads", ("/asyncio/", "selectors.py", "threading.py", "/concurrent/")),
)
LOOKED_THROUGH = ("functools.py", "dataclasses.py", "enum.py", "typing.py", "contextlib.py", "abc.py", "<frozen")
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*):\d+\)$")


@dataclass(frozen=True)
class Profile:
    calls: int
    seconds: float
    cpu_seconds: float
    layers: Counter[str]
    functions: Counter[str]

    @property
    def samples(self) -> int:
        return sum(self.layers.values())

    @property
    def cpu_us_per_call(self) -> float:
        return self.cpu_seconds / self.calls * 1e6 if self.calls else float("nan")


def layer_of(file: str) -> str | None:
    path = "/" + file  # py-spy writes paths relative to sys.path ("asyncio/events.py", "common/db/sqlite.py")
    for layer, markers in LAYERS:
        if any(marker in path for marker in markers):
            return layer
    return None


# Python frames that run native code: a sample ending in one is time in C. Without native frames
# (see _spy_command) these name where that C code was called from.
NATIVE_ENTRIES = {
    ("_run", "asyncio/events.py"): "C code run by loop callbacks (grpc.aio's completion queue)",
    ("run", "threading.py"): "C code on threads of their own (grpc's poller)",
}


def charge(stack: list[tuple[str, str]]) -> tuple[str, str]:
    """(layer, function) a sample is charged to: its innermost frame of a layer."""
    for function, file in reversed(stack):
        if any(generic in file for generic in LOOKED_THROUGH):
            continue
        native = NATIVE_ENTRIES.get((function, file))
        if native is not None:
            return native, f"{function} ({_short(file)})"
        layer = layer_of(file)
        if layer is not None:
            return layer, f"{function} ({_short(file)})"
    function, file = stack[-1] if stack else ("?", "?")
    return "other", f"{function} ({_short(file)})"


def _short(file: str) -> str:
    """py-spy names files relative to sys.path already; an absolute path is cut after site-packages."""
    return file.split("site-packages/", 1)[-1]


# A thread-pool worker waiting for work blocks in C without py-spy seeing it idle: not CPU.
IDLE_ENTRIES = {("_worker", "concurrent/futures/thread.py")}


def parse_raw(text: str) -> tuple[Counter[str], Counter[str]]:
    """py-spy's raw output (one "frame;frame;... count" line per stack) charged to layers and
    functions; samples of idle pool workers are left out."""
    layers: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for line in text.splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not stack_text or not count.isdigit():
            continue
        stack = [(m.group("function"), m.group("file")) for frame in stack_text.split(";") if (m := _FRAME.match(frame))]
        if stack and stack[-1] in IDLE_ENTRIES:
            continue
        layer, function = charge(stack)
        layers[layer] += int(count)
        functions[function] += int(count)
    return layers, functions


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


Load = Callable[[int], Awaitable[object]]


async def _get_customer_load(channel: aio.Channel) -> Load:
    stub = cgrpc.CustomerServiceStub(channel)
    made = await asyncio.gather(*(stub.OnboardCustomer(bench_onboarding(i)) for i in range(200)))
    requests = [cpb.GetCustomerRequest(customer_id=m.customer.customer_id) for m in made]
    rng = random.Random(7)
    return lambda i: stub.GetCustomer(rng.choice(requests))


async def _payment_load(channel: aio.Channel) -> Load:
    stub = pgrpc.PaymentServiceStub(channel)
    accounts = await funded_accounts(channel, "prof")
    rng = random.Random(3)

    def one(i: int) -> Awaitable[object]:
        debtor = rng.choice(accounts)
        payee = rng.choice([a for a in accounts if a != debtor])
        request = ppb.CreatePaymentRequest(
            request_id=f"prof-pay-{i}",
            debtor_account_id=debtor,
            amount=eur("1.00"),
            internal=ppb.InternalBeneficiary(account_id=payee),
        )
        return stub.CreatePayment(request)

    return one


WORKLOADS: dict[str, Callable[[aio.Channel], Awaitable[Load]]] = {
    "get-customer": _get_customer_load,
    "payment": _payment_load,
}


def _spy_command(pid: int, args: argparse.Namespace, raw: Path) -> list[str]:
    """py-spy attached from outside for the measured seconds, never pausing the server. (Its
    --native mode must pause the process at every sample: under load that measured itself.)"""
    spy = str(Path(sys.executable).parent / "py-spy")
    duration, rate = str(int(args.seconds)), str(args.rate)
    return [
        spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        duration,
        "--rate",
        rate,
        "--format",
        "raw",
        "--output",
        str(raw),
        "--nonblocking",
    ]


async def _measure(target: str, pid: int, args: argparse.Namespace, raw: Path) -> tuple[Result, float]:
    async with admin_channel(target) as channel:
        return await _measure_on(channel, pid, args, raw)


async def _measure_on(channel: aio.Channel, pid: int, args: argparse.Namespace, raw: Path) -> tuple[Result, float]:
    call = await WORKLOADS[args.workload](channel)
    await closed_loop("warm-up", call, args.in_flight, 1.0, warmup=0.0)
    spy = await asyncio.create_subprocess_exec(
        *_spy_command(pid, args, raw), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    cpu_before = _cpu_seconds(pid)
    result = await closed_loop(args.workload, call, args.in_flight, float(int(args.seconds)), warmup=0.0)
    cpu = _cpu_seconds(pid) - cpu_before
    _, errors = await spy.communicate()
    if spy.returncode != 0:
        raise RuntimeError(f"py-spy failed: {errors.decode().strip()}")
    return result, cpu


def profile(args: argparse.Namespace) -> Profile:
    with tempfile.TemporaryDirectory() as data_dir:
        extra = ("--fraud-rules", str(generous_fraud_rules(Path(data_dir)))) if args.workload == "payment" else ()
        with running_server(bank_command(data_dir, *extra), env=bank_env()) as (target, pid):
            raw = Path(args.raw or Path(data_dir) / "profile.raw")
            result, cpu = asyncio.run(_measure(target, pid, args, raw))
            layers, functions = parse_raw(raw.read_text())
    return Profile(result.calls, result.seconds, cpu, layers, functions)


def print_profile(p: Profile, top: int) -> None:
    print(f"{p.calls} calls in {p.seconds:.0f} s ({p.calls / p.seconds:.0f}/s); server CPU {p.cpu_us_per_call:.0f} µs per call;")
    print(f"{p.samples} samples\n")
    header = f"{'layer':<60} {'share':>7} {'µs per call':>12}"
    print(header)
    print("-" * len(header))
    for layer, count in p.layers.most_common():
        share = count / p.samples
        print(f"{layer:<60} {share:>7.1%} {share * p.cpu_us_per_call:>12.1f}")
    print(f"\nthe {top} functions most samples end in")
    for function, count in p.functions.most_common(top):
        print(f"{count / p.samples:>7.1%}  {function}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="get-customer")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds sampled under load (default 8)")
    parser.add_argument("--in-flight", type=int, default=64, help="calls in flight (default 64)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second (default 250)")
    parser.add_argument("--top", type=int, default=15, help="functions listed (default 15)")
    parser.add_argument("--raw", type=Path, default=None, help="keep py-spy's raw stacks in this file")
    parser.add_argument(
        "--native",
        action="store_true",
        help="sample native frames too (C extensions: grpc, protobuf); pauses the server at each sample",
    )
    args = parser.parse_args()
    print_profile(profile(args), args.top)


if __name__ == "__main__":
    main()
