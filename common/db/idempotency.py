"""Idempotency keys stored in the same transaction as the change they guard (SQLite)."""

from __future__ import annotations

import sqlite3

from common.idempotency import IdempotencyKey, key_reused

FRAMEWORK_SQL = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    request_id  TEXT PRIMARY KEY,
    operation   TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
"""


def replayed_resource(conn: sqlite3.Connection, key: IdempotencyKey) -> str | None:
    """The resource made by an earlier request with this key, None for a new key.

    Raises AlreadyExists (IDEMPOTENCY_KEY_REUSED) when the key was used for other content.
    """
    row = conn.execute(
        "SELECT operation, fingerprint, resource_id FROM idempotency_keys WHERE request_id = ?", (key.request_id,)
    ).fetchone()
    if row is None:
        return None
    if row[0] != key.operation or row[1] != key.fingerprint:
        raise key_reused(key)
    return str(row[2])


def remember(conn: sqlite3.Connection, key: IdempotencyKey, resource_id: str) -> None:
    conn.execute(
        "INSERT INTO idempotency_keys (request_id, operation, fingerprint, resource_id) VALUES (?, ?, ?, ?)",
        (key.request_id, key.operation, key.fingerprint, resource_id),
    )
