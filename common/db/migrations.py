"""Versioned SQL migrations, one directory of numbered files per context and dialect.

Files are named `NNNN_description.sql`; each is applied once, in order, inside a transaction,
and recorded in `schema_migrations` under its scope ("framework" for the tables common/ owns,
"context" for the context's own), so the two numberings never collide.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(package: str, dialect: str) -> list[Migration]:
    """Migrations shipped in `<package>/sql/<dialect>/`, sorted by version."""
    folder: Traversable = resources.files(package) / "sql" / dialect
    found = []
    for entry in folder.iterdir():
        match = _NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {package} ({dialect}): {versions}")
    return found


def apply_migrations(conn: sqlite3.Connection, *, scope: str, migrations: list[Migration]) -> list[str]:
    """Applies the pending migrations of `scope` on an SQLite connection; returns their names."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (scope TEXT NOT NULL, version INTEGER NOT NULL,"
        " name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (scope, version))"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations WHERE scope = ?", (scope,))}
    applied = []
    for migration in migrations:
        if migration.version in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (scope, version, name) VALUES (?, ?, ?)",
                (scope, migration.version, migration.name),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        applied.append(migration.name)
    return applied


def _statements(sql: str) -> list[str]:
    """Splits a migration file on semicolons at line ends (no procedural SQL in our migrations)."""
    return [s.strip() for s in re.split(r";\s*\n", sql + "\n") if s.strip()]
