"""Users, the customers identity knows of, and the audit trail, in the identity context's own database.

Each repository loads and saves in one transaction and decides nothing: the use cases hold the
unit (`IdentityUnit`), ask the domain whether a change may be made, and save what it decided."""

from __future__ import annotations

from datetime import UTC, datetime

from common.db.base import Row, Tx
from common.db.databases import ContextDatabase
from common.db.units import Unit, Units
from common.di import BaseComponent, og_component
from common.errors import AlreadyExists
from common.security.context import ADMIN
from services.identity.domain import (
    AuditEvent,
    AuditQuery,
    User,
)

_COLUMNS = "user_id, username, password_hash, roles, customer_id, created_at, disabled, token_generation, updated_at"
_AUDIT_COLUMNS = "audit_event_id, recorded_at, context, operation, resource, actor, on_behalf_of, request_id, service, reason"
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


_ENABLED_ADMIN = "disabled = 0 AND (',' || roles || ',') LIKE ?"  # users_enabled_admins indexes exactly these
_ADMIN_PATTERN = f"%,{ADMIN},%"


class Users:
    """The users of one transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def _by(self, column: str, value: str) -> User | None:
        row = await self._tx.fetchone(f"SELECT {_COLUMNS} FROM users WHERE {column} = ?", value)
        return _user(row) if row else None

    async def get(self, user_id: str) -> User | None:
        return await self._by("user_id", user_id)

    async def by_username(self, username: str) -> User | None:
        return await self._by("username", username)

    async def locked(self, actor_id: str, user_id: str) -> dict[str, User]:
        """The actor and the user as they are now, locked until the unit ends; when they differ (a
        change that may take an admin away), every enabled admin too, so that the admin count the
        change relies on cannot move before it commits. PostgreSQL: one statement, rows locked in
        user_id order, so two changes naming the same users wait for each other instead of
        deadlocking; SQLite: the unit already holds the database's one write lock."""
        lock = " ORDER BY user_id FOR UPDATE" if self._tx.dialect == "postgres" else ""
        if actor_id == user_id:  # a user's own change (password, revocation) never takes an admin away
            rows = await self._tx.fetchall(f"SELECT {_COLUMNS} FROM users WHERE user_id = ?{lock}", user_id)
        else:
            where = f"user_id IN (?, ?) OR ({_ENABLED_ADMIN})"
            rows = await self._tx.fetchall(f"SELECT {_COLUMNS} FROM users WHERE {where}{lock}", actor_id, user_id, _ADMIN_PATTERN)
        return {row["user_id"]: _user(row) for row in rows}

    async def add(self, user: User) -> None:
        """Adds `user`; USERNAME_TAKEN when another has its username (the unique index decides
        between two racing)."""
        added = await self._tx.execute(
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

    async def save(self, changed: User) -> None:
        await self._tx.execute(
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

    async def rehash(self, user_id: str, replaced: str, password_hash: str) -> bool:
        """A conditional write: the stronger hash of the same password replaces `replaced` only if
        that is still the stored one (a password changed meanwhile is never put back)."""
        sql = "UPDATE users SET password_hash = ? WHERE user_id = ? AND password_hash = ?"
        return await self._tx.execute(sql, password_hash, user_id, replaced) == 1

    async def page(self, after: int, limit: int) -> tuple[list[User], int | None]:
        rows = await self._tx.fetchall(f"SELECT seq, {_COLUMNS} FROM users WHERE seq > ? ORDER BY seq LIMIT ?", after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return [_user(r) for r in rows], rows[-1]["seq"] if more else None

    async def changed_since(self, since: datetime) -> list[User]:
        """The users whose tokens a check may have to refuse: disabled ones, and ones whose tokens
        were revoked (their generation moved on) since `since`."""
        rows = await self._tx.fetchall(
            f"SELECT {_COLUMNS} FROM users WHERE disabled = 1 OR (token_generation > 0 AND updated_at > ?)", since.isoformat()
        )
        return [_user(row) for row in rows]


class KnownCustomers:
    """The customers identity has learnt of (from CustomerOnboarded), in one transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def learn(self, customer_id: str) -> None:
        sql = "INSERT INTO known_customers (customer_id) VALUES (?) ON CONFLICT (customer_id) DO NOTHING"
        await self._tx.execute(sql, customer_id)

    async def knows(self, customer_id: str) -> bool:
        return await self._tx.fetchone("SELECT 1 AS known FROM known_customers WHERE customer_id = ?", customer_id) is not None


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
        row["reason"],
    )


class AuditTrail:
    """The bank's audit trail, kept by identity, in one transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def record(self, events: list[AuditEvent]) -> None:
        """Once per event: a redelivered record changes nothing."""
        await self._tx.executemany(
            f"INSERT INTO audit_events ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (audit_event_id) DO NOTHING",
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
                    e.reason,
                )
                for e in events
            ],
        )

    async def page(self, query: AuditQuery, before: int, limit: int) -> tuple[list[AuditEvent], int | None]:
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
        rows = await self._tx.fetchall(
            f"SELECT seq, {_AUDIT_COLUMNS} FROM audit_events WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
            *params,
            limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return [_audit_event(r) for r in rows], rows[-1]["seq"] if more else None


class IdentityUnit(Unit):
    """One transaction of the identity context."""

    def __init__(self, tx: Tx) -> None:
        super().__init__(tx)
        self.users = Users(tx)
        self.customers = KnownCustomers(tx)
        self.audit = AuditTrail(tx)


@og_component()
class IdentityUnits(BaseComponent, Units[IdentityUnit]):
    """The identity context's units of work, on its own database."""

    def __init__(self, db: ContextDatabase) -> None:
        Units.__init__(self, db, IdentityUnit)
