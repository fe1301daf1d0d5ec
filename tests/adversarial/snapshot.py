"""Every row of every table of every context, read straight from the databases: what a refused
request must leave exactly as it was."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import psycopg

from common.config import Settings

Snapshot = dict[str, list[tuple[object, ...]]]


def _sqlite(folder: Path) -> Snapshot:
    tables: Snapshot = {}
    for path in sorted(folder.glob("*.db")):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            names = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            ]
            for name in names:
                tables[f"{path.stem}.{name}"] = sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)
    return tables


def _postgres(dsn: str) -> Snapshot:
    tables: Snapshot = {}
    with psycopg.connect(dsn) as conn:
        names = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
        for schema, name in names:
            rows = conn.execute(f'SELECT * FROM "{schema}"."{name}"').fetchall()
            tables[f"{schema}.{name}"] = sorted(rows, key=repr)
    return tables


async def snapshot(settings: Settings) -> Snapshot:
    if settings.database == "postgres":
        return await asyncio.to_thread(_postgres, settings.postgres_dsn)
    return await asyncio.to_thread(_sqlite, Path(settings.data_dir))


def differences(before: Snapshot, after: Snapshot) -> dict[str, tuple[list[tuple[object, ...]], list[tuple[object, ...]]]]:
    """{table: (rows gone, rows new)} for every table that changed."""
    changed = {}
    for table in sorted(set(before) | set(after)):
        old, new = before.get(table, []), after.get(table, [])
        if old != new:
            changed[table] = ([r for r in old if r not in new], [r for r in new if r not in old])
    return changed
