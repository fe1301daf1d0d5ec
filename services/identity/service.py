"""Use cases of the identity context: users, the first admin, and token issue. Input arrives
validated (api.py); each use case authorizes before it reads or writes."""

from __future__ import annotations

import math
import os
import secrets
import time
from pathlib import Path

from common.clock import Clock
from common.config import Settings
from common.di import BaseComponent, og_component
from common.errors import NotFound, ResourceExhausted, Unauthenticated
from common.idempotency import IdempotencyKey
from common.ids import new_id
from common.pagination import PageRequest
from common.resilience.bulkhead import Bulkhead
from common.security.component import Security
from common.security.context import ADMIN, SecurityContext, current_caller
from common.security.policy import denied, require_role
from common.security.tokens import issue, jwks
from services.identity.domain import LoginThrottle, User, hash_password, needs_rehash, password_matches
from services.identity.repository import UserRepository

# Checked for an unknown username, at the same cost as a real one (argon2id, current parameters).
_DUMMY_HASH = "$argon2id$v=19$m=19456,t=2,p=1$Wh+e0CySjxjYsgjEMN4zEA$bQ3Wym8f7jRFltQv4ujdyKEXJPD3aE7kYXpcX8ebLHs"


def admin_password_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / "admin-password"


@og_component()
class IdentityUseCases(BaseComponent):
    def __init__(self, users: UserRepository, security: Security, settings: Settings, clock: Clock) -> None:
        self._users = users
        self._security = security
        self._settings = settings
        self._clock = clock
        self._throttle = LoginThrottle()
        # Each hash is 19 MiB of argon2id: two at a time, a few waiting, never the event loop's threads.
        self._hashing = Bulkhead("password-hashing", workers=2, waiting=16)

    async def initialize(self) -> None:
        await self._bootstrap_admin()

    async def shutdown(self) -> None:
        self._hashing.close()

    async def _bootstrap_admin(self) -> None:
        """The first admin comes from configuration; without a configured password one is
        generated once and written (mode 0600) beside the data, for the operator to read."""
        if await self._users.by_username(self._settings.admin_username) is not None:
            return
        password = self._settings.admin_password or self._generated_admin_password()
        await self._create(self._settings.admin_username, password, (ADMIN,), "", None)
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
        self, username: str, password: str, roles: tuple[str, ...], customer_id: str, key: IdempotencyKey | None
    ) -> User:
        password_hash = await self._hashing.run(hash_password, password)
        user = User(new_id("usr"), username, roles, customer_id, password_hash, self._clock.now())
        return await self._users.add(user, key)

    async def create_user(
        self, username: str, password: str, roles: tuple[str, ...], customer_id: str, key: IdempotencyKey
    ) -> User:
        require_role(ADMIN, action="create users")
        return await self._create(username, password, roles, customer_id, key)

    async def get(self, user_id: str) -> User:
        caller = current_caller()
        if not caller.has_role(ADMIN) and caller.user_id != user_id:
            raise denied("read other users")
        user = await self._users.get(user_id)
        if user is None:
            raise NotFound("user", user_id)
        return user

    async def page(self, request: PageRequest) -> tuple[list[User], str]:
        require_role(ADMIN, action="list users")
        users, next_after = await self._users.page(request.after_seq, request.limit)
        return users, request.next_token(next_after)

    async def issue_token(self, username: str, password: str, audience: str, peer: str) -> tuple[str, int]:
        """Same answer and about the same time for an unknown user and a wrong password; locked
        out for a while after repeated failures, before any password is hashed."""
        now = time.monotonic()
        wait = self._throttle.wait(username, peer, now)
        if wait > 0:
            raise ResourceExhausted(
                "LOGIN_THROTTLED",
                f"too many failed logins; retry in {math.ceil(wait)} s",
                {"retry_after_seconds": str(math.ceil(wait))},
                retry_after=wait,
            )
        user = await self._users.by_username(username)
        matches = await self._hashing.run(password_matches, password, user.password_hash if user else _DUMMY_HASH)
        if user is None or not matches:
            self._throttle.failed(username, peer, time.monotonic())
            raise Unauthenticated("INVALID_CREDENTIALS", "unknown username or wrong password")
        self._throttle.succeeded(username)
        if needs_rehash(user.password_hash):  # an older scheme or weaker parameters: upgraded while the password is at hand
            await self._users.set_password_hash(user.user_id, await self._hashing.run(hash_password, password))
        caller = SecurityContext(user.user_id, user.username, user.roles, user.customer_id)
        return issue(self._security.private_key, self._security.token_settings, caller, audience)

    def signing_keys(self) -> str:
        return jwks([self._security.private_key.public_key()])
