"""Users, the customers identity knows of, and the audit trail, in the identity context's own database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from common.db.base import Row, Tx, stored
from common.db.databases import ContextDatabase
from common.db.idempotency import once, replayed_resource
from common.di import BaseComponent, og_component
from common.errors import AlreadyExists, NotFound
from common.idempotency import IdempotencyKey
from common.security.context import ADMIN
from services.identity.domain import (
    AuditEvent,
    AuditQuery,
    TokenRevocation,
    User,
    check_an_admin_remains,
    drops_admin,
    is_enabled_admin,
    revocation_of,
)

_COLUMNS = "user_id, username, password_hash, roles, customer_id, created_at, disabled, token_generation, updated_at"
_AUDIT_COLUMNS = "audit_event_id, recorded_at, context, operation, resource, actor, on_behalf_of, request_id, service"
_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width: text order is time order


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime(_TIME)


def _user(row: Row) -> User:
    return User(
        row["user_id"],
        row["username"],
        tuple(row["roles"].split(",")),
        row["customer_id"],
        row["password_hash"],
        datetime.fromisoformat(row["created_at"]),
        bool(row["disabled"]),
        int(row["token_generation"]),
        datetime.fromisoformat(row["updated_at"]) if row["updated_at"] else None,
    )


async def _by(tx: Tx, column: str, value: str) -> User | None:
    row = await tx.fetchone(f"SELECT {_COLUMNS} FROM users WHERE {column} = ?", value)
    return _user(row) if row else None


async def _by_id(tx: Tx, user_id: str) -> User | None:
    return await _by(tx, "user_id", user_id)


async def _by_username(tx: Tx, username: str) -> User | None:
    return await _by(tx, "username", username)


Authorize = Callable[[User | None], None]  # given the actor as the database has them now; raises to refuse
Change = Callable[[User], User]


_ENABLED_ADMIN = "disabled = 0 AND (',' || roles || ',') LIKE ?"  # users_enabled_admins indexes exactly these
_ADMIN_PATTERN = f"%,{ADMIN},%"


async def _locked(tx: Tx, actor_id: str, user_id: str) -> dict[str, User]:
    """The actor and the user as they are now, locked until the unit ends; when they differ (a
    change that may take an admin away), every enabled admin too, so that the admin count the
    change relies on cannot move before it commits. PostgreSQL: one statement, rows locked in
    user_id order, so two changes naming the same users wait for each other instead of
    deadlocking; SQLite: the unit already holds the database's one write lock."""
    lock = " ORDER BY user_id FOR UPDATE" if tx.dialect == "postgres" else ""
    if actor_id == user_id:  # a user's own change (password, revocation) never takes an admin away
        rows = await tx.fetchall(f"SELECT {_COLUMNS} FROM users WHERE user_id = ?{lock}", user_id)
    else:
        where = f"user_id IN (?, ?) OR ({_ENABLED_ADMIN})"
        rows = await tx.fetchall(f"SELECT {_COLUMNS} FROM users WHERE {where}{lock}", actor_id, user_id, _ADMIN_PATTERN)
    return {row["user_id"]: _user(row) for row in rows}


async def _insert(tx: Tx, user: User, key: IdempotencyKey | None, actor_id: str, authorize: Authorize | None) -> User:
    """Claims the key first (a concurrent twin of this request waits for it, then replays); then
    decides whether the actor may, as they are now; a refusal stays the request_id's answer."""

    async def make() -> User:
        if authorize is not None:
            authorize((await _locked(tx, actor_id, actor_id)).get(actor_id))
        return await _add(tx, user)

    async def replay(user_id: str) -> User:
        return stored(await _by_id(tx, user_id), user_id)

    if key is None:
        return await make()
    return await once(tx, key, user.user_id, make, replay)


async def _add(tx: Tx, user: User) -> User:
    added = await tx.execute(
        f"INSERT INTO users ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0, 0, NULL) ON CONFLICT (username) DO NOTHING",
        user.user_id,
        user.username,
        user.password_hash,
        ",".join(user.roles),
        user.customer_id,
        user.created_at.isoformat(),
    )
    if added != 1:
        raise AlreadyExists("USERNAME_TAKEN", f"username '{user.username}' is taken", {"username": user.username})
    return user


async def _change(tx: Tx, user_id: str, change: Change, key: IdempotencyKey, actor_id: str, authorize: Authorize) -> User:
    """One change of a user under its key, decided inside the write: the actor's authority, the
    user's state (e.g. the password a current one was checked against) and the admin count are
    read here, with the actor and the user locked, and the change is written by the same unit. A
    replay answers with the user as it is now; a refusal met here stays the request_id's answer
    (a twin racing it, or a retry once the state has changed, hears the same refusal)."""

    async def make() -> User:
        users = await _locked(tx, actor_id, user_id)
        authorize(users.get(actor_id))
        user = users.get(user_id)
        if user is None:
            raise NotFound("user", user_id)
        changed = change(user)
        if drops_admin(user, changed):  # counted among the locked rows: all enabled admins, or (own change) the user alone
            check_an_admin_remains(user, sum(is_enabled_admin(u) for u in users.values()) - 1)
        await _write(tx, changed)
        return changed

    async def replay(_: str) -> User:
        return stored(await _by_id(tx, user_id), user_id)

    return await once(tx, key, user_id, make, replay)


async def _write(tx: Tx, changed: User) -> None:
    await tx.execute(
        "UPDATE users SET roles = ?, customer_id = ?, password_hash = ?, disabled = ?, token_generation = ?, updated_at = ?"
        " WHERE user_id = ?",
        ",".join(changed.roles),
        changed.customer_id,
        changed.password_hash,
        int(changed.disabled),
        changed.token_generation,
        changed.updated_at.isoformat() if changed.updated_at else None,
        changed.user_id,
    )


async def _replayed(tx: Tx, key: IdempotencyKey) -> str | None:
    return await replayed_resource(tx, key)


async def _page(tx: Tx, after: int, limit: int) -> tuple[list[User], int | None]:
    rows = await tx.fetchall(f"SELECT seq, {_COLUMNS} FROM users WHERE seq > ? ORDER BY seq LIMIT ?", after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return [_user(r) for r in rows], rows[-1]["seq"] if more else None


async def _rehash(tx: Tx, user_id: str, replaced: str, password_hash: str) -> bool:
    """A conditional write: the stronger hash of the same password replaces `replaced` only if that
    is still the stored one (a password changed meanwhile is never put back)."""
    return (
        await tx.execute(
            "UPDATE users SET password_hash = ? WHERE user_id = ? AND password_hash = ?", password_hash, user_id, replaced
        )
        == 1
    )


async def _revocations(tx: Tx, now: datetime, token_lifetime: timedelta) -> list[TokenRevocation]:
    since = (now - token_lifetime).isoformat()
    rows = await tx.fetchall(
        f"SELECT {_COLUMNS} FROM users WHERE disabled = 1 OR (token_generation > 0 AND updated_at > ?)", since
    )
    return [r for r in (revocation_of(_user(row), now, token_lifetime) for row in rows) if r is not None]


async def _learn_customer(tx: Tx, customer_id: str) -> None:
    await tx.execute("INSERT INTO known_customers (customer_id) VALUES (?) ON CONFLICT (customer_id) DO NOTHING", customer_id)


async def _knows_customer(tx: Tx, customer_id: str) -> bool:
    return await tx.fetchone("SELECT 1 AS known FROM known_customers WHERE customer_id = ?", customer_id) is not None


async def _record(tx: Tx, events: list[AuditEvent]) -> None:
    """Once per event: a redelivered record changes nothing."""
    await tx.executemany(
        f"INSERT INTO audit_events ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (audit_event_id) DO NOTHING",
        [
            (
                e.audit_event_id,
                _when(e.time),
                e.context,
                e.operation,
                e.resource,
                e.actor,
                ",".join(e.on_behalf_of),
                e.request_id,
                e.service,
            )
            for e in events
        ],
    )


def _audit_event(row: Row) -> AuditEvent:
    return AuditEvent(
        row["audit_event_id"],
        datetime.strptime(row["recorded_at"], _TIME).replace(tzinfo=UTC),
        row["context"],
        row["operation"],
        row["resource"],
        row["actor"],
        tuple(c for c in row["on_behalf_of"].split(",") if c),
        row["request_id"],
        row["service"],
    )


async def _audit_page(tx: Tx, query: AuditQuery, before: int, limit: int) -> tuple[list[AuditEvent], int | None]:
    """Newest recorded first; `before` is the seq the previous page ended on (0: the top)."""
    where: list[str] = ["(? = 0 OR seq < ?)"]
    params: list[object] = [before, before]
    for column, value in (("actor", query.actor), ("resource", query.resource)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if query.start is not None:
        where.append("recorded_at >= ?")
        params.append(_when(query.start))
    if query.end is not None:
        where.append("recorded_at < ?")
        params.append(_when(query.end))
    rows = await tx.fetchall(
        f"SELECT seq, {_AUDIT_COLUMNS} FROM audit_events WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
        *params,
        limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return [_audit_event(r) for r in rows], rows[-1]["seq"] if more else None


class UserRepository(Protocol):
    async def add(self, user: User, key: IdempotencyKey | None, actor_id: str = "", authorize: Authorize | None = None) -> User:
        """Adds `user` if `authorize` accepts the actor as they are now (None: the bank itself, at start)."""

    async def change(self, user_id: str, change: Change, key: IdempotencyKey, actor_id: str, authorize: Authorize) -> User:
        """Applies `change` if `authorize` accepts the actor as they are now, both locked meanwhile."""

    async def replayed(self, key: IdempotencyKey) -> str | None:
        """The user an earlier request with this key changed; None for a new key."""

    async def get(self, user_id: str) -> User | None: ...

    async def by_username(self, username: str) -> User | None: ...

    async def page(self, after: int, limit: int) -> tuple[list[User], int | None]: ...

    async def rehash(self, user_id: str, replaced: str, password_hash: str) -> bool:
        """Whether the stored hash was still `replaced` and is now `password_hash`."""

    async def revocations(self, now: datetime, token_lifetime: timedelta) -> list[TokenRevocation]: ...

    async def learn_customer(self, customer_id: str) -> None: ...

    async def knows_customer(self, customer_id: str) -> bool: ...

    async def record(self, events: list[AuditEvent]) -> None: ...

    async def audit_page(self, query: AuditQuery, before: int, limit: int) -> tuple[list[AuditEvent], int | None]: ...


@og_component()
class SqlUserRepository(BaseComponent, UserRepository):
    def __init__(self, db: ContextDatabase) -> None:
        self._db = db

    async def add(self, user: User, key: IdempotencyKey | None, actor_id: str = "", authorize: Authorize | None = None) -> User:
        return await self._db.write(_insert, user, key, actor_id, authorize)

    async def change(self, user_id: str, change: Change, key: IdempotencyKey, actor_id: str, authorize: Authorize) -> User:
        return await self._db.write(_change, user_id, change, key, actor_id, authorize)

    async def replayed(self, key: IdempotencyKey) -> str | None:
        return await self._db.read(_replayed, key)

    async def get(self, user_id: str) -> User | None:
        return await self._db.read(_by_id, user_id)

    async def by_username(self, username: str) -> User | None:
        return await self._db.read(_by_username, username)

    async def page(self, after: int, limit: int) -> tuple[list[User], int | None]:
        return await self._db.read(_page, after, limit)

    async def rehash(self, user_id: str, replaced: str, password_hash: str) -> bool:
        return await self._db.write(_rehash, user_id, replaced, password_hash)

    async def revocations(self, now: datetime, token_lifetime: timedelta) -> list[TokenRevocation]:
        return await self._db.read(_revocations, now, token_lifetime)

    async def learn_customer(self, customer_id: str) -> None:
        await self._db.write(_learn_customer, customer_id)

    async def knows_customer(self, customer_id: str) -> bool:
        return await self._db.read(_knows_customer, customer_id)

    async def record(self, events: list[AuditEvent]) -> None:
        await self._db.write(_record, events)

    async def audit_page(self, query: AuditQuery, before: int, limit: int) -> tuple[list[AuditEvent], int | None]:
        return await self._db.read(_audit_page, query, before, limit)
