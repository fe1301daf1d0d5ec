"""The ledger's invariants as queries that return the rows breaking them (none when it holds),
read straight from the account context's tables after fuzzing, faults or load."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import psycopg

from common.config import Settings

# SQLite stores whatever a computation gives: a balance that overflowed 64 bits would be a float.
INTEGERS_ONLY = {
    "balances not stored as integers": "SELECT account_id FROM accounts WHERE typeof(balance_minor) != 'integer'",
    "entries not stored as integers": "SELECT seq FROM entries WHERE typeof(balance_after_minor) != 'integer'",
}


def ledger_checks(schema: str = "") -> dict[str, str]:
    """`schema`: the account context's PostgreSQL schema; empty for its own SQLite file."""
    t = f"{schema}." if schema else ""
    return {
        "currencies not summing to zero": f"SELECT currency, SUM(balance_minor) FROM {t}accounts GROUP BY currency HAVING SUM(balance_minor) != 0",
        "transfers without two balanced entries": (
            f"SELECT transfer_id FROM {t}entries GROUP BY transfer_id HAVING SUM(amount_minor) != 0 OR COUNT(*) != 2"
        ),
        "balances differing from their entries": (
            f"SELECT a.account_id FROM {t}accounts a LEFT JOIN (SELECT account_id, SUM(amount_minor) AS s FROM {t}entries"
            " GROUP BY account_id) e ON e.account_id = a.account_id WHERE a.balance_minor != COALESCE(e.s, 0)"
        ),
        "held amounts differing from placed holds": (
            f"SELECT a.account_id FROM {t}accounts a LEFT JOIN (SELECT debit_account_id, SUM(amount_minor) AS s FROM {t}holds"
            " WHERE status = 'PLACED' GROUP BY debit_account_id) h ON h.debit_account_id = a.account_id"
            " WHERE a.held_minor != COALESCE(h.s, 0)"
        ),
    }


async def broken_ledger(settings: Settings) -> dict[str, list[Any]]:
    """The invariants that do not hold in an embedded bank's ledger (on SQLite, also that every
    balance is an integer), read from its database; empty when the ledger is sound."""

    def check() -> dict[str, list[Any]]:
        if settings.database == "postgres":
            with psycopg.connect(settings.postgres_dsn) as conn:
                return {k: rows for k, q in ledger_checks("account").items() if (rows := conn.execute(q).fetchall())}
        with sqlite3.connect(Path(settings.data_dir) / "account.db") as conn:
            return {k: rows for k, q in (ledger_checks() | INTEGERS_ONLY).items() if (rows := conn.execute(q).fetchall())}

    return await asyncio.to_thread(check)
