"""Versioned SQL migrations, one directory of numbered files per package and dialect.

Files are named `NNNN_description.sql` under `<package>/sql/`, written once for every engine: the
few words that differ are tokens (`{serial_pk}`, `{bytes}`) replaced per dialect. Each migration is
applied once, in order, in its own transaction, and recorded in `schema_migrations` under its scope
(the package), so the framework's tables and a context's tables are numbered independently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from common.db.base import Database, Tx

_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")
DIALECT_TOKENS: dict[str, dict[str, str]] = {
    "sqlite": {"serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "bytes": "BLOB"},
    "postgres": {"serial_pk": "BIGSERIAL PRIMARY KEY", "bytes": "BYTEA"},
}


@dataclass(frozen=True)
class Migration:
    scope: str
    version: int
    name: str
    sql: str


def load_migrations(package: str, dialect: str) -> list[Migration]:
    """Migrations shipped in `<package>/sql/`, in `dialect`, sorted by version."""
    folder = resources.files(package) / "sql"
    if not folder.is_dir():
        return []  # a context with no tables of its own (only the framework's)
    tokens = DIALECT_TOKENS[dialect]
    found = [
        Migration(package, int(match.group(1)), entry.name, entry.read_text(encoding="utf-8").format(**tokens))
        for entry in folder.iterdir()
        if (match := _NAME.fullmatch(entry.name))
    ]
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {package} ({dialect}): {versions}")
    return found


_LEDGER = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (scope TEXT NOT NULL, version INTEGER NOT NULL,"
    " name TEXT NOT NULL, PRIMARY KEY (scope, version))"
)


async def _ensure_ledger(tx: Tx) -> None:
    await tx.execute(_LEDGER)


async def _pending(tx: Tx, migrations: list[Migration]) -> list[Migration]:
    done = {(row["scope"], row["version"]) for row in await tx.fetchall("SELECT scope, version FROM schema_migrations")}
    return [m for m in migrations if (m.scope, m.version) not in done]


async def _apply(tx: Tx, migration: Migration) -> None:
    for statement in split_statements(migration.sql):
        await tx.execute(statement)
    await tx.execute(
        "INSERT INTO schema_migrations (scope, version, name) VALUES (?, ?, ?)",
        migration.scope,
        migration.version,
        migration.name,
    )


async def _migrate(tx: Tx, migrations: list[Migration]) -> list[str]:
    if tx.dialect == "postgres":  # replicas of a context start together: one migrates, the others wait
        await tx.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
    await _ensure_ledger(tx)
    applied = []
    for migration in await _pending(tx, migrations):
        await _apply(tx, migration)
        applied.append(f"{migration.scope}:{migration.name}")
    return applied


async def apply_migrations(db: Database, migrations: list[Migration]) -> list[str]:
    """Applies what is pending, all or nothing, in one transaction; returns their names."""
    return await db.write(_migrate, migrations)


def split_statements(sql: str) -> list[str]:
    """Splits a migration on semicolons at line ends (no procedural SQL in our migrations)."""
    return [s.strip() for s in re.split(r";\s*\n", sql + "\n") if s.strip()]
