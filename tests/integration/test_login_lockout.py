"""Strangers at several addresses guessing one username cannot lock its owner out (OWASP's
authentication guidance: throttle, never let a stranger lock an account): over real gRPC, seven
addresses hammer the first admin's username at once; the owner's right password from an address
it logged in from is never refused, from a new address it gets in within a few retries that honor
RetryInfo, and the password hashes checked for the username stay within the ceiling and its
trickle. Each address is a real source address (127.0.0.N) through a TCP relay; the same story runs
through two replicas of identity sharing Redis in test_login_throttle_replicas.py."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc import aio

from common.grpc.client import open_channel
from common.grpc.status import rich_status, unpack_detail
from mesh.embedded import RunningBank
from ogpgy.identity.v1 import identity_service_pb2 as pb
from ogpgy.identity.v1 import identity_service_pb2_grpc as pb_grpc
from tests.conftest import ADMIN_PASSWORD

CEILING = 30  # the default login_limits_username: "30/minute", tries from addresses the username has not logged in from
TURN_SECONDS = 2.0  # the default login_limits_username_overflow: "1/2 seconds", once the ceiling is full
HAMMERING_SECONDS = 40.0  # at most: they stop once the owner is through
STRANGERS = tuple(f"127.0.0.{n}" for n in range(2, 9))  # seven addresses
OWNER_KNOWN, OWNER_NEW = "127.0.0.20", "127.0.0.21"
MAX_RETRIES = 10


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def relay(target: str, source: str) -> AsyncIterator[str]:
    """A TCP relay whose connections reach `target` from the local address `source`: the bank
    sees that caller at that address (all of 127.0.0.0/8 is loopback). Its own address."""
    host, port = target.rsplit(":", 1)
    tasks: set[asyncio.Task[None]] = set()

    async def forward(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(host, int(port), local_addr=(source, 0))
        for task in (_pipe(client_reader, server_writer), _pipe(server_reader, client_writer)):
            tasks.add(asyncio.create_task(task))

    server = await asyncio.start_server(forward, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True)
class Outcome:
    reason: str  # "OK", INVALID_CREDENTIALS (a password was checked), LOGIN_THROTTLED (refused before any hash)
    retry_after: float = 0.0  # RetryInfo's delay, for a throttled one


async def login(identity: pb_grpc.IdentityServiceStub, username: str, password: str) -> Outcome:
    try:
        await identity.IssueToken(pb.IssueTokenRequest(username=username, password=password), timeout=20)
    except aio.AioRpcError as refused:
        status = rich_status(refused)
        assert status is not None, refused
        info = unpack_detail(status, error_details_pb2.ErrorInfo)
        retry = unpack_detail(status, error_details_pb2.RetryInfo)
        assert isinstance(info, error_details_pb2.ErrorInfo), refused
        delay = retry.retry_delay.ToMilliseconds() / 1000 if isinstance(retry, error_details_pb2.RetryInfo) else 0.0
        return Outcome(info.reason, delay)
    return Outcome("OK")


@dataclass
class Attack:
    """What the owner met while strangers hammered the username."""

    known: list[str]  # the owner's logins from the address it logged in from before
    new_tries: list[Outcome]  # the owner's tries from a new address, retried after RetryInfo's delay
    strangers: Counter[str]  # the strangers' outcomes
    in_while_hammered: bool = False  # the owner's login from the new address succeeded while the strangers still guessed
    seconds: float = 0.0  # how long the strangers guessed

    @property
    def hashed(self) -> int:
        """Password checks made at the username: every answer but a throttled one checked one."""
        owner = sum(o.reason != "LOGIN_THROTTLED" for o in self.new_tries) + len(self.known)
        return owner + sum(n for reason, n in self.strangers.items() if reason != "LOGIN_THROTTLED")


async def owner_under_attack(
    targets: Sequence[str], tls: grpc.ChannelCredentials | None = None, username: str = "admin", password: str = ADMIN_PASSWORD
) -> Attack:
    """Seven strangers hammer `username` (whose ceiling nobody has touched yet) through `targets`
    (in turn) until the owner is through (HAMMERING_SECONDS at most); meanwhile the owner logs in
    from the address it logged in from before, and from a new one."""
    async with AsyncExitStack() as stack:

        async def stub(source: str, target: str) -> pb_grpc.IdentityServiceStub:
            address = await stack.enter_async_context(relay(target, source))
            return pb_grpc.IdentityServiceStub(await stack.enter_async_context(open_channel(address, tls)))

        known = await stub(OWNER_KNOWN, targets[0])
        new = await stub(OWNER_NEW, targets[-1])
        assert await login(known, username, password) == Outcome("OK")  # the owner's address; 1 try of the ceiling
        strangers = Counter[str]()
        full = asyncio.Event()  # the username's ceiling: from here on they overflow
        done = asyncio.Event()  # the owner is through (or gave up): the strangers stop
        started, give_up = time.monotonic(), time.monotonic() + HAMMERING_SECONDS

        async def hammer(identity: pb_grpc.IdentityServiceStub, n: int) -> None:
            while not done.is_set() and time.monotonic() < give_up:
                strangers[(await login(identity, username, f"guess {n} {strangers.total()}")).reason] += 1
                if strangers["INVALID_CREDENTIALS"] >= CEILING - 1:
                    full.set()
                await asyncio.sleep(0.02)

        stubs = [await stub(source, targets[i % len(targets)]) for i, source in enumerate(STRANGERS)]
        hammering = [asyncio.create_task(hammer(s, n)) for n, s in enumerate(stubs) for _ in range(2)]
        await asyncio.wait_for(full.wait(), HAMMERING_SECONDS)
        owner_known = []
        for _ in range(4):
            owner_known.append((await login(known, username, password)).reason)
            await asyncio.sleep(0.3)
        new_tries = [await login(new, username, password)]
        while new_tries[-1].reason == "LOGIN_THROTTLED" and len(new_tries) <= MAX_RETRIES:
            await asyncio.sleep(new_tries[-1].retry_after)
            new_tries.append(await login(new, username, password))
        in_while_hammered = new_tries[-1].reason == "OK" and all(not t.done() for t in hammering)
        done.set()
        await asyncio.gather(*hammering)
        return Attack(owner_known, new_tries, strangers, in_while_hammered, time.monotonic() - started)


def check_the_owner_got_in_and_the_hashes_stayed_bounded(attack: Attack) -> None:
    new = [f"{o.reason} {o.retry_after:.2f}s" for o in attack.new_tries]
    print(f"known: {attack.known}; new: {new}; strangers: {dict(attack.strangers)}; hashed: {attack.hashed}")
    assert attack.known == ["OK"] * 4, attack  # never refused at an address it logged in from
    assert attack.new_tries[-1].reason == "OK", attack  # from a new address: within MAX_RETRIES
    assert attack.in_while_hammered, attack  # and while they still hammered, not once they had stopped
    assert all(0 < o.retry_after <= TURN_SECONDS for o in attack.new_tries[:-1]), attack  # told a few seconds, not the minute
    assert attack.strangers["LOGIN_THROTTLED"] > 10 * CEILING, attack  # they did hammer
    # The ceiling, a turn every TURN_SECONDS while they hammered (one more at the edge), and the
    # owner's first login (before the ceiling filled); the owner's other logins are not counted against it.
    bound = CEILING + int(attack.seconds / TURN_SECONDS) + 2 + len(attack.known)
    assert attack.hashed <= bound, (attack.hashed, bound, attack)


async def test_seven_addresses_guessing_the_first_admin_never_lock_its_owner_out(bank: RunningBank) -> None:
    """Before the known address and the trickle, the full ceiling refused the owner everywhere."""
    check_the_owner_got_in_and_the_hashes_stayed_bounded(await owner_under_attack([bank.target]))
