"""The infrastructure context (pattern 4): shared technical services, no business logic."""

from __future__ import annotations

from pathlib import Path

from common.clock import Clock
from common.config import Settings
from common.db.sqlite import SqliteDatabase
from common.di import BaseComponent, og_component, og_context


@og_component()
class Databases(BaseComponent):
    """Hands each context its own database; contexts never share tables."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def sqlite(self, context: str) -> SqliteDatabase:
        """The SQLite file of `context` under the data directory (opened by its owner)."""
        return SqliteDatabase(Path(self._settings.data_dir) / f"{context}.db")


@og_context(
    name="infrastructure",
    description="Shared technical services: settings, clock, databases",
    business_owner="Platform Team",
    providers=[Clock, Databases],
    exports=[Settings, Clock, Databases],
)
class InfrastructureModule:
    """Settings are supplied by the process (ContextModuleBuilder.supply)."""
