"""The infrastructure context: shared technical services, no business logic."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

from common.cache.registry import Caches
from common.clock import Clock
from common.config import Settings
from common.db.base import Database, UnitOfWork
from common.db.migrations import load_migrations
from common.db.postgres import PostgresDatabase
from common.db.sqlite import SqliteDatabase
from common.di import BaseComponent, og_component, og_context
from common.events.bus import EventBus
from common.pagination import PageTokens
from common.security.component import Security

R = TypeVar("R")


@og_component()
class Databases(BaseComponent):
    """Hands each context its own database (an SQLite file, or a PostgreSQL schema)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def for_context(self, context: str) -> Database:
        if self._settings.database == "postgres":
            if not self._settings.postgres_dsn:
                raise ValueError("database = postgres needs postgres_dsn")
            return PostgresDatabase(self._settings.postgres_dsn, schema=context)
        if self._settings.database != "sqlite":
            raise ValueError(f"unknown database {self._settings.database!r}: sqlite or postgres")
        return SqliteDatabase(Path(self._settings.data_dir) / f"{context}.db")


class ContextDatabase(BaseComponent):
    """A context's own database, opened and migrated with the context's lifecycle.

    Each context declares a three-line subclass naming itself; its migrations live in
    `<migrations_package>/sql/<dialect>/`.
    """

    context: ClassVar[str]
    migrations_package: ClassVar[str]

    def __init__(self, databases: Databases) -> None:
        self._db = databases.for_context(self.context)

    @property
    def dialect(self) -> str:
        return self._db.dialect

    async def initialize(self) -> None:
        await self._db.open(load_migrations(self.migrations_package, self._db.dialect))

    async def shutdown(self) -> None:
        await self._db.close()

    async def read(self, fn: UnitOfWork[R], *args: Any) -> R:
        return await self._db.read(fn, *args)

    async def write(self, fn: UnitOfWork[R], *args: Any) -> R:
        return await self._db.write(fn, *args)

    async def lead(self, role: str) -> bool:
        return await self._db.lead(role)


@og_component()
class ServerPageTokens(PageTokens):
    """Page tokens signed with a key derived from the bank's signing key: every replica of every
    context reads the tokens of every other."""

    def __init__(self, security: Security) -> None:
        super().__init__(security.derived_key("ogpgy page tokens v1"))


@og_context(
    name="infrastructure",
    description="Shared technical services: settings, clock, databases, event bus, caches, security, page tokens",
    business_owner="Platform Team",
    providers=[Clock, Databases, EventBus, Caches, Security, ServerPageTokens],
    exports=[Settings, Clock, Databases, EventBus, Caches, Security, ServerPageTokens],
)
class InfrastructureModule:
    """Settings are supplied by the process (ContextModuleBuilder.supply)."""
