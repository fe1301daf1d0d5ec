"""Each context's own database: an SQLite file, or a schema of one PostgreSQL database."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from common.config import Settings
from common.db.base import Database, UnitOfWork
from common.db.migrations import load_migrations
from common.db.postgres import PostgresDatabase, VolatileDatabase, server_durability
from common.db.sqlite import SqliteDatabase
from common.di import BaseComponent, ContextInfo, og_component

R = TypeVar("R")


@og_component()
class Databases(BaseComponent):
    """Hands each context its own database, on the engine the settings name."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._open: dict[str, Database] = {}

    def opened(self) -> dict[str, Database]:
        """The contexts' databases open in this process, by context: what the platform's own
        records kept in a context's database (its dead letters) are reached through."""
        return dict(self._open)

    def remember(self, context: str, db: Database) -> None:
        self._open[context] = db

    def forget(self, context: str) -> None:
        self._open.pop(context, None)

    async def initialize(self) -> None:
        """Refuses, before any context opens its database, a PostgreSQL server that may lose what
        it acknowledged: a payment answered OK must survive an OS crash or a power loss. (SQLite
        syncs every commit: common.db.sqlite.)"""
        if self._settings.database != "postgres" or not self._settings.postgres_dsn:
            return
        server = await server_durability(self._settings.postgres_dsn)
        if not server.gaps:
            return
        gaps = ", ".join(server.gaps)
        if not self._settings.allow_volatile_database:
            raise VolatileDatabase(
                f"the PostgreSQL server at {server.where} runs with {gaps}: a commit it acknowledged may be lost on an OS"
                " crash or power loss, and with it an answer the bank gave. Turn fsync, full_page_writes and"
                " synchronous_commit on, or, for a throw-away cluster only, set allow_volatile_database"
                " (OGPGY_ALLOW_VOLATILE_DATABASE=true)"
            )
        self.logger.warning(
            "NOT DURABLE: the PostgreSQL server at %s runs with %s; what the bank answers OK may be lost on an OS crash"
            " or power loss (allow_volatile_database is set: a throw-away cluster only)",
            server.where,
            gaps,
        )

    def for_context(self, context: str) -> Database:
        if self._settings.database == "postgres":
            if not self._settings.postgres_dsn:
                raise ValueError("database = postgres needs postgres_dsn")
            return PostgresDatabase(self._settings.postgres_dsn, schema=context)
        if self._settings.database != "sqlite":
            raise ValueError(f"unknown database {self._settings.database!r}: sqlite or postgres")
        return SqliteDatabase(Path(self._settings.data_dir) / f"{context}.db")


@og_component()
class ContextDatabase(BaseComponent):
    """The database of the context that lists it, opened and migrated with that context: the
    framework's tables and the context's own migrations (`<its package>/sql/<dialect>/`)."""

    def __init__(self, databases: Databases, context: ContextInfo) -> None:
        self._db = databases.for_context(context.name)
        self._migrations = context.package
        self._databases = databases
        self._name = context.name

    @property
    def dialect(self) -> str:
        return self._db.dialect

    async def initialize(self) -> None:
        await self._db.open(load_migrations(self._migrations, self._db.dialect))
        self._databases.remember(self._name, self._db)

    async def shutdown(self) -> None:
        self._databases.forget(self._name)
        await self._db.close()

    async def read(self, fn: UnitOfWork[R], *args: Any) -> R:
        return await self._db.read(fn, *args)

    async def write(self, fn: UnitOfWork[R], *args: Any) -> R:
        return await self._db.write(fn, *args)

    async def lead(self, role: str) -> bool:
        return await self._db.lead(role)

    async def notified(self, channel: str, within: float) -> bool:
        return await self._db.notified(channel, within)
