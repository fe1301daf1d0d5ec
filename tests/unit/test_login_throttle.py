"""Password checks are limited before they are hashed: a burst in flight at one username from one
address gets as many checks as there are slots; a refused attempt spends nothing; one address
slows itself and that username from it, not the username's owner elsewhere; successes are free;
many addresses at one username fill its ceiling, which then slows them to a trickle in turns, and
an address the username logged in from is not slowed by them at all."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest
from limits.aio.storage import MemoryStorage

from common.errors import Unavailable
from common.net import address_holder
from common.security.throttle import AttemptThrottle, Key, Rule
from services.identity.domain import known_address, login_subjects
from services.identity.service import login_key, login_keys
from tests.servers import free_port

TRIES = Rule.parse("username-at-address", "5/minute;10/hour")
ADDRESS_FAILURES = Rule.parse("address", "12/minute", counts_failures=True)
USERNAME_FAILURES = Rule.parse("username", "8/minute", counts_failures=True)
RULES = {rule.name: rule for rule in (TRIES, ADDRESS_FAILURES, USERNAME_FAILURES)}
CEILING = Rule.parse("username", "8/minute", cleared_by_success=False)
OVERFLOW = Rule.parse("username-overflow", "1/2 seconds", cleared_by_success=False)
OVERFLOW_AT_ADDRESS = Rule.parse("username-overflow-at-address", "1/30 seconds", cleared_by_success=False)
KNOWN = Rule.parse("known-address", "1/30 days")
LOGIN_RULES = {rule.name: rule for rule in (TRIES, ADDRESS_FAILURES, CEILING, OVERFLOW, OVERFLOW_AT_ADDRESS, KNOWN)}


def keys(username: str, peer: str) -> list[Key]:
    return [Key(RULES[rule], parts) for rule, parts in login_subjects(username, peer)]


async def _guess(throttle: AttemptThrottle, username: str, peer: str, *, right: bool = False) -> bool:
    """One password check as identity asks for it; whether it was made (not refused before)."""
    if await throttle.reserve(keys(username, peer)):
        return False
    await asyncio.sleep(0.01)  # the hash, while other attempts arrive
    await throttle.settle(keys(username, peer), succeeded=right)
    return True


async def test_a_burst_in_flight_gets_as_many_checks_as_there_are_slots() -> None:
    throttle = AttemptThrottle("test")
    checked = await asyncio.gather(*(_guess(throttle, "ada", "10.0.0.1") for _ in range(40)))
    assert sum(checked) == 5
    wait = await throttle.reserve(keys("ada", "10.0.0.1"))
    assert 0 < wait <= 60  # told to come back within the minute window


async def test_the_owner_elsewhere_is_not_locked_out_and_a_success_clears_its_tries() -> None:
    throttle = AttemptThrottle("test")
    for _ in range(20):
        await _guess(throttle, "ada", "10.0.0.1")  # the attacker: 5 checked, 15 refused before any hash
    assert await throttle.reserve(keys("ADA", "10.0.0.1")) > 0
    assert await _guess(throttle, "ada", "10.0.0.2", right=True), "the owner, from elsewhere"
    assert await _guess(throttle, "bob", "10.0.0.1"), "the address still tries other usernames"
    for _ in range(10):  # the owner logs in again and again: each success clears the tries
        assert await _guess(throttle, "ada", "10.0.0.2", right=True)


async def test_many_addresses_guessing_one_username_are_slowed_by_its_failures_ceiling() -> None:
    throttle = AttemptThrottle("test")
    checked = [await _guess(throttle, "ada", f"10.0.1.{i}") for i in range(12)]
    assert checked == [True] * 8 + [False] * 4
    assert await _guess(throttle, "bob", "10.0.1.99"), "another username is not slowed"


async def test_one_address_guessing_across_usernames_is_slowed_and_its_successes_are_free() -> None:
    throttle = AttemptThrottle("test")
    for _ in range(30):
        assert await _guess(throttle, "carol", "10.0.2.1", right=True)  # many logins behind one address
    checked = [await _guess(throttle, f"user{i}", "10.0.2.1") for i in range(15)]
    assert checked == [True] * 12 + [False] * 3
    assert await _guess(throttle, "user0", "10.0.2.2"), "another address is not slowed"


async def test_a_store_out_of_reach_refuses_the_attempt_rather_than_letting_it_through() -> None:
    throttle = AttemptThrottle("test", f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(Unavailable) as refused:
            await throttle.reserve(keys("ada", "10.0.0.1"))
        assert refused.value.reason == "THROTTLE_UNAVAILABLE"
    finally:
        await throttle.close()


async def test_an_ipv6_subscriber_is_one_address_however_many_of_its_64_it_uses() -> None:
    throttle = AttemptThrottle("test")
    checked = [await _guess(throttle, "ada", f"2001:db8:1:2::{i:x}") for i in range(1, 8)]
    assert checked == [True] * 5 + [False] * 2
    assert await _guess(throttle, "ada", "2001:db8:1:3::1"), "the next /64 is another subscriber"
    assert address_holder("::ffff:10.0.0.1") == address_holder("10.0.0.1") == "10.0.0.1"
    assert address_holder("inprocess") == "inprocess"


def test_a_malformed_rule_stops_the_start() -> None:
    with pytest.raises(ValueError):
        Rule.parse("username", "")


async def _login(throttle: AttemptThrottle, username: str, peer: str, *, right: bool = False) -> float:
    """One password check as identity makes it (login_keys, known addresses remembered): 0.0 when
    it was made, else the wait it was told."""
    known = login_key(LOGIN_RULES, known_address(username, peer))
    keys_ = login_keys(LOGIN_RULES, username, peer, known=await throttle.remembers(known))
    wait = await throttle.reserve(keys_)
    if wait:
        return wait
    await throttle.settle(keys_, succeeded=right)
    if right:
        await throttle.remember(known)
    return 0.0


async def test_a_full_username_ceiling_slows_new_addresses_to_a_turn_each_and_never_the_known_one() -> None:
    throttle = AttemptThrottle("test")
    assert await _login(throttle, "ada", "10.0.3.1", right=True) == 0.0  # the owner's usual address, new yet: 1 of 8
    checked = [await _login(throttle, "ada", f"10.0.4.{i}") == 0.0 for i in range(7)]
    assert checked == [True] * 7  # the ceiling (8/minute) is full
    assert await _login(throttle, "ada", "10.0.4.100") == 0.0  # a new address: the one turn of these 2 s
    wait = await _login(throttle, "ada", "10.0.4.101")
    assert 0 < wait <= 2, "the next new address waits for the next turn, not for the minute"
    await asyncio.sleep(wait)
    assert await _login(throttle, "ada", "10.0.4.101", right=True) == 0.0  # and gets it
    assert 2 < await _login(throttle, "ada", "10.0.4.100") <= 30, "an address that had a turn waits for its own next"
    for _ in range(10):  # the owner at the known address: its own tries only
        assert await _login(throttle, "ada", "10.0.3.1", right=True) == 0.0
    assert await _login(throttle, "ada", "10.0.4.101", right=True) == 0.0, "known since it logged in"


async def test_successes_leave_the_in_memory_store_expiring_whole(caplog: pytest.LogCaptureFixture) -> None:
    """Embedded mode: logins that succeed (each clears its windows) while the library's expiry
    pass walks the keys. The pass used to meet a key a success had deleted under it: a KeyError
    ended it ("Task exception was never retrieved" in the log) and the keys after it were left
    unpruned. Every pass runs to its end, and once the windows have passed the store is empty
    (a failure's slot, not cleared, expires)."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    throttle = AttemptThrottle("test")
    storage = throttle._windows.storage  # the library's own store, whose dicts must shrink back
    assert isinstance(storage, MemoryStorage)
    tries = Rule.parse("username-at-address", "5/1 second")

    async def login(address: int) -> None:
        key = [Key(tries, ("ada", f"10.0.{address // 250}.{address % 250}"))]
        assert await throttle.reserve(key) == 0
        await asyncio.sleep(0.001 * (address % 7))  # the hash, while other logins arrive
        await throttle.settle(key, succeeded=address % 3 != 0)  # a failure's slot stays until it expires

    for _ in range(5):
        await asyncio.gather(*(login(address) for address in range(300)))
    await asyncio.sleep(1.1)  # every window has passed
    await throttle.reserve([Key(tries, ("bob", "10.9.9.9"))])  # a hit: the next expiry pass starts
    timer = storage.timer
    assert timer is not None
    await asyncio.wait({timer})
    assert timer.exception() is None
    gc.collect()  # a dropped task whose exception nobody retrieved is reported when collected
    never_retrieved = [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]
    assert not never_retrieved, never_retrieved[0]
    assert len(storage.events) <= 1 and len(storage.locks) <= 1, (len(storage.events), len(storage.locks))
