"""Users in the identity context's own database."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from common.db.base import Row, Tx, stored
from common.db.databases import ContextDatabase
from common.db.idempotency import claim
from common.di import BaseComponent, og_component
from common.errors import AlreadyExists
from common.idempotency import IdempotencyKey
from services.identity.domain import User

_COLUMNS = "user_id, username, password_hash, roles, customer_id, created_at"


def _user(row: Row) -> User:
    return User(
        row["user_id"],
        row["username"],
        tuple(row["roles"].split(",")),
        row["customer_id"],
        row["password_hash"],
        datetime.fromisoformat(row["created_at"]),
    )


async def _by(tx: Tx, column: str, value: str) -> User | None:
    row = await tx.fetchone(f"SELECT {_COLUMNS} FROM users WHERE {column} = ?", value)
    return _user(row) if row else None


async def _by_id(tx: Tx, user_id: str) -> User | None:
    return await _by(tx, "user_id", user_id)


async def _by_username(tx: Tx, username: str) -> User | None:
    return await _by(tx, "username", username)


async def _insert(tx: Tx, user: User, key: IdempotencyKey | None) -> User:
    """Claims the key first (a concurrent twin of this request waits for it, then replays); a
    refusal raises, so the claim rolls back with it and the request_id stays free."""
    if key is not None and (replayed := await claim(tx, key, user.user_id)) is not None:
        return stored(await _by_id(tx, replayed), replayed)
    added = await tx.execute(
        f"INSERT INTO users ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (username) DO NOTHING",
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


async def _page(tx: Tx, after: int, limit: int) -> tuple[list[User], int | None]:
    rows = await tx.fetchall(f"SELECT seq, {_COLUMNS} FROM users WHERE seq > ? ORDER BY seq LIMIT ?", after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return [_user(r) for r in rows], rows[-1]["seq"] if more else None


async def _set_password_hash(tx: Tx, user_id: str, password_hash: str) -> None:
    await tx.execute("UPDATE users SET password_hash = ? WHERE user_id = ?", password_hash, user_id)


class UserRepository(Protocol):
    async def add(self, user: User, key: IdempotencyKey | None) -> User: ...

    async def get(self, user_id: str) -> User | None: ...

    async def by_username(self, username: str) -> User | None: ...

    async def page(self, after: int, limit: int) -> tuple[list[User], int | None]: ...

    async def set_password_hash(self, user_id: str, password_hash: str) -> None: ...


@og_component()
class SqlUserRepository(BaseComponent, UserRepository):
    def __init__(self, db: ContextDatabase) -> None:
        self._db = db

    async def add(self, user: User, key: IdempotencyKey | None) -> User:
        return await self._db.write(_insert, user, key)

    async def get(self, user_id: str) -> User | None:
        return await self._db.read(_by_id, user_id)

    async def by_username(self, username: str) -> User | None:
        return await self._db.read(_by_username, username)

    async def page(self, after: int, limit: int) -> tuple[list[User], int | None]:
        return await self._db.read(_page, after, limit)

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        await self._db.write(_set_password_hash, user_id, password_hash)
