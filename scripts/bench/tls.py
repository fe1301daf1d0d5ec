"""What TLS and tokens cost per connection and per call: a new connection's first call (handshake
included) in plaintext, TLS and mutual TLS against a server of the bank's own CA, calls on an open
connection in each, and a token's verification (first sight, then remembered)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from grpc import aio  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from common.grpc.server import GrpcServer  # noqa: E402
from common.grpc.tls import ServerCertificate, channel_credentials  # noqa: E402
from common.security.context import ADMIN, SecurityContext  # noqa: E402
from common.security.pki import CertificateAuthority, spiffe_id  # noqa: E402
from common.security.tokens import TokenSettings, TokenVerifier, issue  # noqa: E402

CHECK = health_pb2.HealthCheckRequest()


async def _timed(samples: int, once: Callable[[], Awaitable[object]]) -> list[float]:
    times = []
    for _ in range(samples):
        began = time.perf_counter()
        await once()
        times.append((time.perf_counter() - began) * 1e3)
    return times


async def _serve(authority: CertificateAuthority, mode: str) -> tuple[GrpcServer, str]:
    server = GrpcServer()
    credentials = None
    if mode != "plaintext":
        certificate = ServerCertificate(authority, spiffe_id("context", "account"))
        credentials = certificate.credentials(require_client_certificate=mode == "mutual TLS")
    port = server.bind("127.0.0.1:0", credentials)
    await server.start()
    return server, f"localhost:{port}"


def _channel(target: str, mode: str, authority: CertificateAuthority) -> aio.Channel:
    if mode == "plaintext":
        return aio.insecure_channel(target)
    client = authority.issue(spiffe_id("context", "payment")) if mode == "mutual TLS" else None
    return aio.secure_channel(target, channel_credentials(authority.certificate_pem, client))


async def connections(samples: int) -> list[tuple[str, list[float], list[float]]]:
    authority = CertificateAuthority.create()
    rows = []
    for mode in ("plaintext", "TLS", "mutual TLS"):
        server, target = await _serve(authority, mode)

        async def first_call(mode: str = mode, target: str = target) -> None:
            async with _channel(target, mode, authority) as channel:
                await health_pb2_grpc.HealthStub(channel).Check(CHECK, timeout=5)

        connect = await _timed(samples, first_call)
        async with _channel(target, mode, authority) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(CHECK, timeout=5)
            calls = await _timed(samples * 10, lambda stub=stub: stub.Check(CHECK, timeout=5))
        await server.stop(0)
        rows.append((mode, connect, calls))
    return rows


def verification(samples: int) -> tuple[float, float]:
    key, settings = Ed25519PrivateKey.generate(), TokenSettings("bench", "bench")
    verifier = TokenVerifier(key.public_key(), settings)
    tokens = [issue(key, settings, SecurityContext(f"usr_{i}", "u", (ADMIN,)))[0] for i in range(samples)]
    began = time.perf_counter()
    for token in tokens:
        verifier.verify(token)
    first = (time.perf_counter() - began) / samples * 1e6
    began = time.perf_counter()
    for token in tokens:
        verifier.verify(token)
    return first, (time.perf_counter() - began) / samples * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="new connections per mode (calls: ten times as many)")
    args = parser.parse_args()
    rows = asyncio.run(connections(args.samples))
    print(f"{'transport':<12} {'new connection + call p50 ms':>29} {'p99 ms':>8} {'call on open p50 ms':>20} {'p99 ms':>8}")
    for mode, connect, calls in rows:
        c99 = statistics.quantiles(connect, n=100)[98]
        k99 = statistics.quantiles(calls, n=100)[98]
        print(f"{mode:<12} {statistics.median(connect):>29.2f} {c99:>8.2f} {statistics.median(calls):>20.3f} {k99:>8.3f}")
    first, remembered = verification(args.samples * 10)
    print(f"\ntoken verification: first sight {first:.1f} µs, remembered {remembered:.2f} µs per call")


if __name__ == "__main__":
    main()
