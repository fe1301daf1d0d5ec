"""Two replicas of identity (two processes of a distributed mesh) count password attempts in one
real Redis: a burst of guesses split between them gets as many password checks as the rules have
slots in all (each replica's own memory would give each its own slots), and an address slowed
through one replica is slowed through the other, while the owner's success clears it; and seven
addresses guessing through both never lock the owner out, the username's ceiling, its trickle and
the addresses it logged in from being shared by both replicas."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator

import pytest

from common.grpc.client import bearer_channel
from mesh.config import ProcessSpec, load_mesh_config
from mesh.distributed import Mesh
from mesh.embedded import CONTEXT_NAMES
from ogpgy.identity.v1.identity_service_pb2 import ROLE_ADMIN
from ogpgy.identity.v1.identity_service_pb2_grpc import IdentityServiceStub
from tests.bank_helpers import create_user
from tests.conftest import ADMIN_PASSWORD, issue_token
from tests.integration.test_login_lockout import (
    check_the_owner_got_in_and_the_hashes_stayed_bounded,
    owner_under_attack,
    relay,
)
from tests.integration.test_login_throttle import TRIES_IN_10_SECONDS, login_outcome
from tests.local_mesh import mesh_root, write_mesh
from tests.servers import PostgresServer, RedisServer, free_port


@pytest.fixture(scope="module")
def two_identities(postgres: PostgresServer, redis_server: RedisServer) -> Iterator[Mesh]:
    """identity twice, every other context in one process, on the session's Redis and PostgreSQL."""
    root = mesh_root("ogpgy-throttle-")
    others = tuple(c for c in CONTEXT_NAMES if c != "identity")
    processes = [
        ProcessSpec("identity", ("identity",), tuple(f"127.0.0.1:{free_port()}" for _ in range(2))),
        ProcessSpec("others", others, (f"127.0.0.1:{free_port()}",)),
    ]
    path = write_mesh(root, processes, redis=redis_server.url, postgres=postgres.new_database())
    mesh = Mesh(path, load_mesh_config(path, known_contexts=CONTEXT_NAMES), admin_password=ADMIN_PASSWORD)
    mesh.start()
    try:
        yield mesh
    finally:
        mesh.stop()
        shutil.rmtree(root, ignore_errors=True)


def _replicas(mesh: Mesh) -> tuple[str, str]:
    return mesh.replica("identity", 0).address, mesh.replica("identity", 1).address


async def test_tries_through_either_replica_count_together_and_a_success_through_one_clears_them(
    two_identities: Mesh,
) -> None:
    first, second = _replicas(two_identities)
    tls = two_identities.tls
    assert [await login_outcome(first, "admin", f"typo {i}", tls) for i in range(4)] == ["INVALID_CREDENTIALS"] * 4
    assert await login_outcome(second, "admin", ADMIN_PASSWORD, tls) == "OK"  # clears the 4 tries made through first
    tries = [await login_outcome((first, second)[i % 2], "admin", f"guess {i}", tls) for i in range(TRIES_IN_10_SECONDS)]
    assert tries == ["INVALID_CREDENTIALS"] * TRIES_IN_10_SECONDS
    assert await login_outcome(first, "admin", ADMIN_PASSWORD, tls) == "LOGIN_THROTTLED"
    assert await login_outcome(second, "admin", ADMIN_PASSWORD, tls) == "LOGIN_THROTTLED"


async def test_forty_guesses_at_once_through_two_replicas_get_the_slots_of_one(two_identities: Mesh) -> None:
    """An unknown username is checked like a known one (against a dummy hash). Every other guess is
    refused before a hash: throttled, or turned away BUSY when a replica's hashing places are all
    taken by the burst (a place is taken before the throttle's slot, so BUSY spends no try)."""
    first, second = _replicas(two_identities)
    tls = two_identities.tls
    outcomes = await asyncio.gather(*(login_outcome((first, second)[i % 2], "ghost", f"guess {i}", tls) for i in range(40)))
    assert outcomes.count("INVALID_CREDENTIALS") == TRIES_IN_10_SECONDS, outcomes
    assert outcomes.count("LOGIN_THROTTLED") + outcomes.count("BUSY") == 40 - TRIES_IN_10_SECONDS, outcomes
    assert outcomes.count("LOGIN_THROTTLED") >= 40 - TRIES_IN_10_SECONDS - 2 * 2, outcomes  # BUSY: beyond 18 places a replica


async def test_seven_addresses_guessing_through_two_replicas_never_lock_the_owner_out(two_identities: Mesh) -> None:
    """The owner logged in through the first replica and is known through both; the strangers
    alternate between them; the owner's new address asks the second. Each replica's own memory
    would give each its own ceiling and trickle (twice the hashes), and not know the owner's address."""
    first, second = _replicas(two_identities)
    tls = two_identities.tls
    async with relay(first, "127.0.0.30") as elsewhere:  # not 127.0.0.1, which the tests above slow at "admin"
        token = await issue_token(elsewhere, tls=tls)
    async with bearer_channel(first, token, tls) as admin:
        await create_user(IdentityServiceStub(admin), "second.admin", ROLE_ADMIN, "the second admin's password")
    attack = await owner_under_attack((first, second), tls, "second.admin", "the second admin's password")
    check_the_owner_got_in_and_the_hashes_stayed_bounded(attack)
