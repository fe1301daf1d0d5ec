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


def loan_checks(account: str, lending: str) -> dict[str, str]:
    """The loans in the ledger, across the two contexts' tables (`account`, `lending`: schema or
    attached database names): the loan book holds minus the principal outstanding, and the
    income accounts hold the interest and late fees paid. They hold whenever no repayment is
    pending and no disbursement is half-way (a quiet bank)."""

    def matches(internal: str, owed: str, sign: str) -> str:
        return (
            f"SELECT a.account_id, a.balance_minor, COALESCE(o.total, 0) FROM {account}.accounts a LEFT JOIN"
            f" (SELECT l.currency, SUM({owed}) AS total FROM {lending}.installments i JOIN {lending}.loans l"
            f" ON l.loan_id = i.loan_id WHERE l.status IN ('DISBURSED', 'PAID_OFF') GROUP BY l.currency) o"
            f" ON a.account_id = '{internal}_' || o.currency"
            f" WHERE a.account_id LIKE '{internal}_%' AND a.balance_minor != {sign}COALESCE(o.total, 0)"
        )

    return {
        "loan book differing from the principal outstanding": matches(
            "acc_LOAN_PRINCIPAL", "i.principal_minor - i.paid_principal_minor", "-"
        ),
        "interest income differing from the interest paid": matches("acc_INTEREST_INCOME", "i.paid_interest_minor", ""),
        "late fee income differing from the late fees paid": matches("acc_PENALTY_INCOME", "i.paid_penalty_minor", ""),
        "repayments left pending": f"SELECT repayment_id FROM {lending}.repayments WHERE status = 'PENDING'",
    }


async def broken_loans(settings: Settings) -> dict[str, list[Any]]:
    """The loan invariants that do not hold in an embedded bank (see loan_checks)."""

    def check() -> dict[str, list[Any]]:
        if settings.database == "postgres":
            with psycopg.connect(settings.postgres_dsn) as conn:
                return {k: rows for k, q in loan_checks("account", "lending").items() if (rows := conn.execute(q).fetchall())}
        with sqlite3.connect(Path(settings.data_dir) / "account.db") as conn:
            conn.execute("ATTACH DATABASE ? AS lending", (str(Path(settings.data_dir) / "lending.db"),))
            return {k: rows for k, q in loan_checks("main", "lending").items() if (rows := conn.execute(q).fetchall())}

    return await asyncio.to_thread(check)


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
