"""Attempts counted before the work they guard, in a store every replica shares.

A slow check that a stranger may ask for (a password hashed with argon2id) is paid for only once
a slot is reserved for it: the count includes the attempts still in flight, so a burst of
concurrent guesses gets as many checks as there are slots, not as many as arrive before the first
failure is counted. Counts live in Redis when the process has one (every replica of a context
sees the same counts), in this process's memory otherwise (embedded mode: one process). The
`limits` library keeps them: moving windows, each hit one atomic step (a Lua script on Redis).

Two kinds of rule:
- one that counts *attempts* takes a slot from each of its windows, atomically per window, before
  the work starts: what is in flight counts, and no burst gets past it. A refused attempt takes
  none (a flood does not lengthen its own wait; only one racing another for a window's last slot
  may keep a slot in a shorter window); a success clears it (it bounds tries since the last
  success, so a user logging in often is never slowed), unless the rule says it is a ceiling that
  nobody's success lifts (`cleared_by_success=False`: what all strangers together get);
- one that counts *failures* refuses while a window is full, before any work, and counts an
  attempt once it has failed: who succeeds spends nothing (many users behind one address). The
  attempts in flight when its window fills may still fail into it: it is exceeded by at most as
  many as the work lets run at once (the caller bounds that, e.g. with a bulkhead).
A key may name an *overflow*: when its own windows are full, the attempt takes a slot in each of
the overflow's keys instead (attempts-counting ceilings), so that a full window slows to a trickle
rather than shutting a door that a stranger can keep shut. And a subject may be *remembered* for
a while (an address a user logged in from), for the caller to count it differently.
Where the store cannot be reached, every attempt is refused (UNAVAILABLE): never unthrottled work.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from common.errors import Unavailable

_REDIS_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Rule:
    """Named windows ("5/10 seconds;20/hour"): at most that many attempts (or failures) in each, per key."""

    name: str
    windows: tuple[RateLimitItem, ...]
    counts_failures: bool = False  # False: counts attempts, before their work; True: failures, after it
    cleared_by_success: bool = True  # attempts only: False, a ceiling that no success lifts

    @staticmethod
    def parse(name: str, windows: str, *, counts_failures: bool = False, cleared_by_success: bool = True) -> Rule:
        """Refuses a malformed or empty rule at start, not at the first attempt."""
        parsed = tuple(parse_many(windows))
        if not parsed:
            raise ValueError(f"rule {name!r}: no window in {windows!r}")
        return Rule(name, parsed, counts_failures, cleared_by_success)


@dataclass(frozen=True)
class Key:
    """One rule applied to one subject (an address, a username and an address, ...)."""

    rule: Rule
    parts: tuple[str, ...]
    overflow: tuple[Key, ...] = ()  # when this key is full, a slot in each of these instead (attempts-counting)

    def identifiers(self) -> tuple[str, ...]:
        """The rule's name and a digest of the subject: fixed width, no separator to collide on,
        and nothing a caller typed (a username, an address) stored in the clear."""
        digest = hashlib.blake2b("\x00".join(self.parts).encode(), digest_size=16).hexdigest()
        return (self.rule.name, digest)


class _MemoryWindows(MemoryStorage):
    """limits' in-process store (embedded mode), its `clear` made safe for its own expiry pass.

    The pass walks a snapshot of the keys, awaiting each key's lock and a thread between them; the
    library's `clear` deletes a key outright, without the lock. A success clearing its windows
    while a pass runs deleted a key the pass had still to visit: it indexed the key, a KeyError
    ended the pass ("Task exception was never retrieved") and the keys after it went unpruned
    until a later pass (limits 5.8.0, the latest release). Here `clear` empties the key's events
    in place of deleting them: the pass deletes an emptied key, and its lock, as it deletes one
    whose events have all expired. A fresh list, not the old one emptied: the pass may be reading
    the old one in its thread."""

    async def clear(self, key: str) -> None:
        self.storage.pop(key, None)
        self.expirations.pop(key, None)
        if key in self.events:
            self.events[key] = []


class AttemptThrottle:
    """Reserves slots for attempts before their work; see the module's docstring."""

    def __init__(self, namespace: str, redis_url: str = "") -> None:
        self._pool: ConnectionPool | None = None
        if redis_url:
            self._pool = ConnectionPool.from_url(
                redis_url, socket_timeout=_REDIS_TIMEOUT_SECONDS, socket_connect_timeout=_REDIS_TIMEOUT_SECONDS
            )
            owned: dict[str, Any] = {"connection_pool": self._pool}  # ours to disconnect at close (limits types only scalars)
            storage: RedisStorage | MemoryStorage = RedisStorage(
                f"async+{redis_url}", implementation="redispy", key_prefix=f"ogpgy-{namespace}", wrap_exceptions=True, **owned
            )
        else:
            storage = _MemoryWindows(wrap_exceptions=True)
        self._windows = MovingWindowRateLimiter(storage)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.disconnect()

    async def reserve(self, keys: Sequence[Key]) -> float:
        """0.0 when every key has room and every attempts-counting key granted this attempt a
        slot (the work may start); otherwise the seconds to wait before trying again."""
        try:
            return await self._reserve(keys)
        except (StorageError, RedisError) as exc:  # limits wraps some storage calls' errors, not the moving window's
            raise _unavailable() from exc

    async def settle(self, keys: Sequence[Key], *, succeeded: bool) -> None:
        """After the work: a success clears what the attempts-counting keys counted (those a
        success clears); a failure is counted by the failures-counting keys. An overflow's slot
        stays taken either way."""
        try:
            for key in keys:
                for window in key.rule.windows:
                    if succeeded and not key.rule.counts_failures and key.rule.cleared_by_success:
                        await self._windows.clear(window, *key.identifiers())
                    elif not succeeded and key.rule.counts_failures:
                        await self._windows.hit(window, *key.identifiers())
        except (StorageError, RedisError) as exc:
            raise _unavailable() from exc

    async def remembers(self, key: Key) -> bool:
        """Whether `remember(key)` was called within its rule's (first) window."""
        try:
            return not await self._windows.test(key.rule.windows[0], *key.identifiers())
        except (StorageError, RedisError) as exc:
            raise _unavailable() from exc

    async def remember(self, key: Key) -> None:
        """Remembers the subject for its rule's (first) window from now (a one-slot window, filled)."""
        window = key.rule.windows[0]
        try:
            await self._windows.clear(window, *key.identifiers())
            await self._windows.hit(window, *key.identifiers())
        except (StorageError, RedisError) as exc:
            raise _unavailable() from exc

    async def _reserve(self, keys: Sequence[Key]) -> float:
        taken: list[Key] = []
        for key in keys:  # a full window refuses before any slot is taken (or sends to the key's overflow)
            wait = await self._room(key)
            if wait and key.overflow:
                overflow_waits = [await self._room(k) for k in key.overflow]
                if not any(overflow_waits):
                    taken += key.overflow
                    continue
                return min(wait, max(overflow_waits))
            if wait:
                return wait
            taken.append(key)
        for key in (k for k in taken if not k.rule.counts_failures):
            for window in key.rule.windows:
                if not await self._windows.hit(window, *key.identifiers()):  # taken meanwhile by a concurrent attempt
                    return await self._wait(key, window)
        return 0.0

    async def _room(self, key: Key) -> float:
        """0.0 when each of the key's windows has room, else the wait for the first full one."""
        for window in key.rule.windows:
            if not await self._windows.test(window, *key.identifiers()):
                return await self._wait(key, window)
        return 0.0

    async def _wait(self, key: Key, window: RateLimitItem) -> float:
        """Until the oldest attempt in the window leaves it (at least a moment: never 0, which means go)."""
        stats = await self._windows.get_window_stats(window, *key.identifiers())
        return max(stats.reset_time - time.time(), 0.001)


def _unavailable() -> Unavailable:
    return Unavailable("THROTTLE_UNAVAILABLE", "attempts cannot be counted now; retry later")


def whole_seconds(wait: float) -> int:
    """A wait as a caller is told it: whole seconds, at least one."""
    return max(math.ceil(wait), 1)
