"""The login throttle: free failures, then lockouts that double, per username and per address."""

from __future__ import annotations

from services.identity.domain import LoginThrottle


def test_a_few_failures_are_free_then_each_one_doubles_the_lockout() -> None:
    throttle = LoginThrottle(lock_user_after=4, lock_peer_after=100, first_lockout=1.0, longest_lockout=8.0)
    for _ in range(3):
        throttle.failed("Ada", "10.0.0.1", now=0.0)
    assert throttle.wait("ada", "10.0.0.2", now=0.0) == 0.0  # three typos cost nothing
    locks = []
    for _ in range(5):
        throttle.failed("ada", "10.0.0.1", now=100.0)
        locks.append(throttle.wait("ADA", "10.0.0.3", now=100.0))  # the username, from anywhere
    assert locks == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert throttle.wait("ada", "10.0.0.3", now=108.0) == 0.0


def test_success_clears_the_username_but_not_the_address() -> None:
    throttle = LoginThrottle(lock_user_after=2, lock_peer_after=3, first_lockout=10.0)
    throttle.failed("ada", "10.0.0.1", now=0.0)
    throttle.succeeded("ada")
    throttle.failed("ada", "10.0.0.1", now=0.0)
    assert throttle.wait("ada", "10.0.0.2", now=0.0) == 0.0, "one failure since the success: free"
    throttle.failed("bob", "10.0.0.1", now=0.0)  # the address's third failure, across usernames
    assert throttle.wait("carol", "10.0.0.1", now=0.0) == 10.0
    assert throttle.wait("carol", "10.0.0.2", now=0.0) == 0.0


def test_what_it_remembers_is_bounded() -> None:
    throttle = LoginThrottle(remembered=10)
    for i in range(100):
        throttle.failed(f"user{i}", "10.0.0.1", now=0.0)
    assert len(throttle._strikes) <= 10
