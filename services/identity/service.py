"""Use cases of the identity context: users and their lifecycle, the first admin, token issue,
the revocations every token check applies, and the audit trail. Input arrives validated
(api.py); each use case authorizes before it reads or writes.

Decide inside the write: the token's roles refuse early (before a customer is waited for or a
password hashed), but what decides a change of users is read in the transaction that writes it,
with the rows locked: the actor still an enabled admin (or the user themself), the admin count,
the password a current one was checked against. Two admins demoting each other at one moment, or
five changes proving the same current password, cannot all rely on a state that one of them ends.
Slow hashing stays outside the write: the write checks that the hash it was checked against is
still the stored one (a conditional write), so no lock is held while argon2id runs."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from datetime import timedelta
from pathlib import Path

from common.background import Background, every
from common.clock import Clock
from common.config import Settings
from common.db.base import stored
from common.di import BaseComponent, og_component
from common.errors import AlreadyExists, NotFound, PermissionDenied, ResourceExhausted, Unauthenticated
from common.idempotency import IdempotencyKey
from common.ids import new_id
from common.observability.metrics import PASSWORD_CHECKS
from common.pagination import PageRequest
from common.resilience.bulkhead import Bulkhead
from common.security.component import Security
from common.security.context import ADMIN, SecurityContext, current_caller
from common.security.policy import denied, require_role
from common.security.throttle import AttemptThrottle, Key, Rule, whole_seconds
from common.security.tokens import CLOCK_SKEW_SECONDS, issue, jwks
from common.validation import Violations
from services.identity.domain import (
    ADDRESS,
    KNOWN_ADDRESS,
    USERNAME,
    USERNAME_AT_ADDRESS,
    USERNAME_OVERFLOW,
    USERNAME_OVERFLOW_AT_ADDRESS,
    AuditEvent,
    AuditQuery,
    Authorize,
    Change,
    Subject,
    TokenRevocation,
    User,
    check_acting_admin,
    check_acting_self_or_admin,
    check_current_password,
    check_not_self_lockout,
    decided_change,
    hash_password,
    known_address,
    login_subjects,
    needs_rehash,
    password_matches,
    revocation_of,
    username_overflow,
)
from services.identity.repository import IdentityUnit, IdentityUnits

_Reserved = tuple[list[Key], Key]  # the keys a password check was counted against, and its known-address key

CUSTOMER_ARRIVAL_SECONDS = 2.0  # a customer onboarded a moment ago is waited for this long, then refused

# Checked for an unknown username, at the same cost as a real one (argon2id, current parameters).
_DUMMY_HASH = "$argon2id$v=19$m=19456,t=2,p=1$Wh+e0CySjxjYsgjEMN4zEA$bQ3Wym8f7jRFltQv4ujdyKEXJPD3aE7kYXpcX8ebLHs"


def admin_password_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / "admin-password"


def login_rules(settings: Settings) -> dict[str, Rule]:
    """How many password checks each subject of login_subjects gets, from the settings; a
    malformed rule stops the start. USERNAME and its overflow are ceilings on what every stranger
    together gets (attempts, in flight included, that no success lifts); KNOWN_ADDRESS is one slot,
    filled by a success, for as many days as the settings say."""
    return {
        USERNAME_AT_ADDRESS: Rule.parse(USERNAME_AT_ADDRESS, settings.login_limits_username_at_address),
        ADDRESS: Rule.parse(ADDRESS, settings.login_limits_address, counts_failures=True),
        USERNAME: Rule.parse(USERNAME, settings.login_limits_username, cleared_by_success=False),
        USERNAME_OVERFLOW: Rule.parse(USERNAME_OVERFLOW, settings.login_limits_username_overflow, cleared_by_success=False),
        USERNAME_OVERFLOW_AT_ADDRESS: Rule.parse(
            USERNAME_OVERFLOW_AT_ADDRESS, settings.login_limits_username_overflow_at_address, cleared_by_success=False
        ),
        KNOWN_ADDRESS: Rule.parse(KNOWN_ADDRESS, f"1/{settings.login_known_address_days} days"),
    }


def login_key(rules: dict[str, Rule], subject: Subject) -> Key:
    rule, parts = subject
    return Key(rules[rule], parts)


def login_keys(rules: dict[str, Rule], username: str, peer: str, *, known: bool) -> list[Key]:
    """The keys of one password check (login_subjects), the username's with its overflow."""
    overflow = tuple(login_key(rules, s) for s in username_overflow(username, peer))
    return [
        Key(rules[rule], parts, overflow if rule == USERNAME else ())
        for rule, parts in login_subjects(username, peer, known=known)
    ]


def _admin_now(action: str) -> Authorize:
    return lambda actor: check_acting_admin(actor, action)


def _self_or_admin_now(user_id: str, action: str) -> Authorize:
    return lambda actor: check_acting_self_or_admin(actor, user_id, action)


@og_component()
class IdentityUseCases(BaseComponent):
    def __init__(self, units: IdentityUnits, security: Security, settings: Settings, clock: Clock) -> None:
        self._units = units
        self._security = security
        self._settings = settings
        self._clock = clock
        # Shared by every replica through Redis (in memory without it): see login_rules.
        self._throttle = AttemptThrottle("identity-logins", settings.redis_url)
        self._login_rules = login_rules(settings)
        # Each hash is 19 MiB of argon2id: two at a time, a few waiting, never the event loop's threads.
        self._hashing = Bulkhead("password-hashing", workers=2, waiting=16)
        # Another replica of identity may change a user: this process's token checks learn it within the period.
        self._refresher = Background(
            "refreshing keys and token revocations", self._refresh, every(settings.revocation_refresh_seconds), self.logger
        )

    async def initialize(self) -> None:
        await self._bootstrap_admin()
        await self.refresh_revocations()
        self._refresher.start(rest_first=True)

    async def shutdown(self) -> None:
        await self._refresher.stop()
        self._hashing.close()
        await self._throttle.close()

    async def _refresh(self) -> None:
        await self._security.reload_keys()
        await self.refresh_revocations()

    async def refresh_revocations(self) -> None:
        """This process's token checks apply the revocations as the database has them now."""
        revocations = await self.revocations()
        self._security.revocations.replace((r.user_id, r.min_generation, r.disabled) for r in revocations)

    async def revocations(self) -> list[TokenRevocation]:
        lifetime = timedelta(seconds=self._security.token_settings.lifetime_bound + CLOCK_SKEW_SECONDS)
        now = self._clock.now()
        users = await self._units.read(lambda uow: uow.users.changed_since(now - lifetime))
        return [r for r in (revocation_of(user, now, lifetime) for user in users) if r is not None]

    async def _bootstrap_admin(self) -> None:
        """The first admin comes from configuration; without a configured password one is
        generated once and written (mode 0600) beside the data, for the operator to read."""
        if await self._by_username(self._settings.admin_username) is not None:
            return
        password = self._settings.admin_password or self._generated_admin_password()
        try:
            await self._create(self._settings.admin_username, password, (ADMIN,), "", None)
        except AlreadyExists:
            return  # another replica of identity, starting at the same moment, made it
        self.logger.info("bootstrapped admin user '%s'", self._settings.admin_username)

    def _generated_admin_password(self) -> str:
        path = admin_password_file(self._settings)
        if path.exists():
            return path.read_text().strip()
        password = secrets.token_urlsafe(18)
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write(password + "\n")
        return password

    async def _create(
        self,
        username: str,
        password: str,
        roles: tuple[str, ...],
        customer_id: str,
        key: IdempotencyKey | None,
        authorize: Authorize | None = None,
    ) -> User:
        password_hash = await self._hashing.run(hash_password, password)
        user = User(new_id("usr"), username, roles, customer_id, password_hash, self._clock.now())
        actor = current_caller().user_id if authorize is not None else ""

        async def unit(uow: IdentityUnit) -> User:
            async def make() -> User:  # the actor's authority as the database has it now, locked
                if authorize is not None:
                    authorize((await uow.users.locked(actor, actor)).get(actor))
                await uow.users.add(user)
                return user

            async def replay(user_id: str) -> User:
                return stored(await uow.users.get(user_id), user_id)

            return await make() if key is None else await uow.once(key, user.user_id, make, replay)

        return await self._units.write(unit)

    async def create_user(
        self, username: str, password: str, roles: tuple[str, ...], customer_id: str, key: IdempotencyKey
    ) -> User:
        """The token's admin role refuses early; the database's, read where the user is written, decides."""
        require_role(ADMIN, action="create users")
        await self._require_known_customer(customer_id)
        return await self._create(username, password, roles, customer_id, key, _admin_now("create users"))

    async def _require_known_customer(self, customer_id: str) -> None:
        """A user is linked only to a customer that exists. Identity learns customers from
        CustomerOnboarded (customer imports identity, so identity cannot call customer): one
        onboarded a moment ago is waited for, briefly."""
        if not customer_id:
            return
        deadline = time.monotonic() + CUSTOMER_ARRIVAL_SECONDS
        while not await self._units.read(lambda uow: uow.customers.knows(customer_id)):
            if time.monotonic() >= deadline:
                raise NotFound("customer", customer_id)
            await asyncio.sleep(0.05)

    async def update_user(self, user_id: str, roles: tuple[str, ...], customer_id: str, key: IdempotencyKey) -> User:
        caller = require_role(ADMIN, action="change users")
        await self._require_known_customer(customer_id)
        now = self._clock.now()

        def change(user: User) -> User:
            check_not_self_lockout(user, caller.user_id, roles=roles)
            return user.with_authority(roles, customer_id, now)

        return await self._change(user_id, change, key, _admin_now("change users"))

    async def set_disabled(self, user_id: str, disabled: bool, key: IdempotencyKey) -> User:
        caller = require_role(ADMIN, action="disable or enable users")
        now = self._clock.now()

        def change(user: User) -> User:
            check_not_self_lockout(user, caller.user_id, disabling=disabled)
            return user.with_disabled(disabled, now)

        return await self._change(user_id, change, key, _admin_now("disable or enable users"))

    async def revoke_tokens(self, user_id: str, key: IdempotencyKey) -> User:
        action = "revoke other users' tokens"
        self._require_self_or_admin(user_id, action)
        now = self._clock.now()
        return await self._change(user_id, lambda user: user.revoked(now), key, _self_or_admin_now(user_id, action))

    async def change_password(self, user_id: str, current: str, new: str, peer: str, key: IdempotencyKey) -> User:
        """Users change their own with their current password (throttled like a login); an admin
        resets another's without it. Either way the user's earlier tokens are refused.

        Hashing is slow, so it is done before the write, against the hash read then; the write
        decides on the hash it sees: still the one checked (else PASSWORD_CHANGED: of concurrent
        changes that proved the same current password exactly one is made), the check matched
        (else current_password is refused), and the caller may still act. Each refusal is kept on
        the request's key."""
        action = "change other users' passwords"
        caller = self._require_self_or_admin(user_id, action)
        replayed = await self._units.read(lambda uow: uow.replayed(key))
        if replayed is not None:
            return await self.get(replayed)
        checked = await self._check_current_password(user_id, current, peer) if caller.user_id == user_id else None
        matched = checked is None or checked[1]
        password_hash = await self._hashing.run(hash_password, new) if matched else ""  # a wrong one writes nothing
        now = self._clock.now()

        def change(user: User) -> User:
            if checked is not None:
                check_current_password(user, *checked)
            return user.with_password(password_hash, now)

        return await self._change(user_id, change, key, _self_or_admin_now(user_id, action))

    async def _check_current_password(self, user_id: str, current: str, peer: str) -> tuple[str, bool]:
        """The stored hash and whether `current` matches it (the write decides on both). A wrong
        current password is a guess like a wrong login: counted before it is hashed."""
        v = Violations()
        v.check(bool(current), "current_password", "required to change your own password")
        v.raise_if_any()
        user = await self._user(user_id)
        if user is None:
            raise NotFound("user", user_id)
        with self._hashing.admission():  # refused BUSY before a throttle slot is taken for nothing
            reserved = await self._reserve_password_check(user.username, peer)
            return user.password_hash, await self._password_matches(reserved, current, user.password_hash)

    async def _reserve_password_check(self, username: str, peer: str) -> _Reserved:
        """A slot for one password check, reserved before anything is read or hashed (see
        login_rules): a burst of guesses gets as many hashes as there are slots, on every replica
        together, however many are in flight. From an address the username logged in from lately
        the username's ceiling does not apply; from any other, once full, it slows (one turn now
        and then, a few per address) rather than refuses: strangers never lock the owner out."""
        known = login_key(self._login_rules, known_address(username, peer))
        keys = login_keys(self._login_rules, username, peer, known=await self._throttle.remembers(known))
        wait = await self._throttle.reserve(keys)
        if wait > 0:
            PASSWORD_CHECKS.labels("throttled").inc()
            raise ResourceExhausted(
                "LOGIN_THROTTLED",
                f"too many password attempts; retry in {whole_seconds(wait)} s",
                {"retry_after_seconds": str(whole_seconds(wait))},
                retry_after=wait,
            )
        return keys, known

    async def _password_matches(self, reserved: _Reserved, password: str, stored: str) -> bool:
        """The check a slot was reserved for: a success clears the username's tries from this
        address and remembers the address as the username's; a failure counts against the address."""
        keys, known = reserved
        matches = await self._hashing.run_admitted(password_matches, password, stored)
        PASSWORD_CHECKS.labels("matched" if matches else "mismatched").inc()
        await self._throttle.settle(keys, succeeded=matches)
        if matches:
            await self._throttle.remember(known)
        return matches

    def _require_self_or_admin(self, user_id: str, action: str) -> SecurityContext:
        caller = current_caller()
        if caller.user_id != user_id and not caller.has_role(ADMIN):
            raise denied(action)
        return caller

    async def _change(self, user_id: str, change: Change, key: IdempotencyKey, authorize: Authorize) -> User:
        """One change of a user under its key, decided inside the write: the actor's authority, the
        user's state (e.g. the password a current one was checked against) and the admin count are
        read by the unit that writes the change, with the actor and the user locked. A replay
        answers with the user as it is now; a refusal stays the request_id's answer."""
        actor_id = current_caller().user_id

        async def unit(uow: IdentityUnit) -> User:
            async def make() -> User:
                changed = decided_change(await uow.users.locked(actor_id, user_id), actor_id, user_id, change, authorize)
                await uow.users.save(changed)
                return changed

            async def replay(_: str) -> User:
                return stored(await uow.users.get(user_id), user_id)

            return await uow.once(key, user_id, make, replay)

        user = await self._units.write(unit)
        await self.refresh_revocations()  # this process refuses at once; the others within the refresh period
        return user

    async def get(self, user_id: str) -> User:
        caller = current_caller()
        if not caller.has_role(ADMIN) and caller.user_id != user_id:
            raise denied("read other users")
        user = await self._user(user_id)
        if user is None:
            raise NotFound("user", user_id)
        return user

    async def _user(self, user_id: str) -> User | None:
        return await self._units.read(lambda uow: uow.users.get(user_id))

    async def _by_username(self, username: str) -> User | None:
        return await self._units.read(lambda uow: uow.users.by_username(username))

    async def page(self, request: PageRequest) -> tuple[list[User], str]:
        require_role(ADMIN, action="list users")
        users, next_after = await self._units.read(lambda uow: uow.users.page(request.after_seq, request.limit))
        return users, request.next_token(next_after)

    async def issue_token(self, username: str, password: str, audience: str, peer: str) -> tuple[str, int]:
        """Same answer and about the same time for an unknown user and a wrong password; slowed
        (RESOURCE_EXHAUSTED with a retry delay) when the guesses are too many, before any password
        is hashed."""
        with self._hashing.admission():  # refused BUSY before a throttle slot is taken for nothing
            reserved = await self._reserve_password_check(username, peer)
            user = await self._by_username(username)
            matches = await self._password_matches(reserved, password, user.password_hash if user else _DUMMY_HASH)
        if user is None or not matches:
            raise Unauthenticated("INVALID_CREDENTIALS", "unknown username or wrong password")
        if user.disabled:
            raise PermissionDenied("USER_DISABLED", "this user is disabled; an admin can enable it", {"username": username})
        if needs_rehash(user.password_hash):  # an older scheme or weaker parameters: upgraded while the password is at hand
            rehashed = await self._hashing.run(hash_password, password)
            await self._units.write(lambda uow: uow.users.rehash(user.user_id, user.password_hash, rehashed))
        caller = SecurityContext(user.user_id, user.username, user.roles, user.customer_id)
        return issue(self._security.private_key, self._security.token_settings, caller, audience, user.token_generation)

    def signing_keys(self) -> str:
        return jwks(self._security.public_keys())

    async def list_revocations(self) -> list[TokenRevocation]:
        """For every process's token check: contexts (and admins) only."""
        caller = current_caller()
        if not caller.service and not caller.has_role(ADMIN):
            raise denied("read token revocations")
        return await self.revocations()

    async def record(self, events: list[AuditEvent]) -> None:
        await self._units.write(lambda uow: uow.audit.record(events))

    async def learn_customer(self, customer_id: str) -> None:
        await self._units.write(lambda uow: uow.customers.learn(customer_id))

    async def audit_page(self, query: AuditQuery, request: PageRequest) -> tuple[list[AuditEvent], str]:
        require_role(ADMIN, action="read the audit trail")
        events, next_before = await self._units.read(lambda uow: uow.audit.page(query, request.after_seq, request.limit))
        return events, request.next_token(next_before)
