"""The daily loan collection for N disbursed loans through the API (RunCollection over gRPC),
beside the set-based SQL floor on the same data, measured in the same run.

Every loan is 1,200.00 at 6 % over 12 months with its first installment (103.27) due today; one
loan in ten is paid into an account that cannot pay it, so the run also marks installments
overdue with the late fee. The floor is the least SQL that could do the same on a copy of the
same two databases taken before the API run: the debits, the three credits, the transfers and
their entries on the ledger; the installments paid, the repayments and the overdue ones with their
fee on the loans; in one transaction. It does what the bank does minus the bank: no idempotency
keys, no audit trail, no events (LoanRepaid and InstallmentOverdue, which the API run also
publishes and the notification context turns into mail while the run goes on, sent to a mail
server outside the bank's process).

Usage: .venv/bin/python scripts/bench/collection.py [--loans 100000]
Seeding writes loans and accounts straight into the two contexts' SQLite tables (setup, not
measured); the seeded balances are offset on the cash account so the books still sum to zero.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from common.ids import new_id  # noqa: E402
from mesh.mail_simulator import MailSimulator  # noqa: E402
from ogpgy.lending.v1 import lending_service_pb2 as lpb  # noqa: E402
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc  # noqa: E402
from ogpgy.type.v1 import date_pb2  # noqa: E402
from scripts.bench.harness import bank_process  # noqa: E402
from services.lending.schedule import add_months, annuity_schedule  # noqa: E402
from tests.bank_helpers import admin_channel  # noqa: E402

FEATURES = (
    '{"annual_interest_rate": "0", "free_transactions_per_month": 0, "interest_bearing": false, "minimum_balance": 0,'
    ' "monthly_fee": 0, "overdraft_limit": 0, "overdraft_protection": false}'
)
FUNDED_MINOR = 50_000  # 500.00: enough for the installment
LATE_FEE_MINOR = 1500  # services/lending/products.toml
OPEN = (
    "i.penalty_minor + i.interest_minor + i.principal_minor"
    " > i.paid_penalty_minor + i.paid_interest_minor + i.paid_principal_minor + i.waived_interest_minor"
)


def seed(data_dir: Path, loans: int, today: date) -> None:
    """`loans` disbursed loans, each with its own account (one in ten empty)."""
    schedule = annuity_schedule(120_000, Decimal("0.06"), 12, add_months(today, -1))
    at = datetime.now(UTC).isoformat()
    loan_rows, installment_rows, account_rows = [], [], []
    for n in range(loans):
        loan_id, account_id, customer_id = new_id("lon"), new_id("acc"), new_id("cus")
        balance = 0 if n % 10 == 9 else FUNDED_MINOR
        account_rows.append((account_id, customer_id, FEATURES, balance, at))
        loan_rows.append(
            (
                loan_id,
                customer_id,
                account_id,
                f"sag-{loan_id}",
                at,
                at,
                schedule[0].total_minor,
                schedule[0].due_date.isoformat(),
            )
        )
        left = 120_000
        for i in schedule:
            left -= i.principal_minor
            installment_rows.append((loan_id, i.number, i.due_date.isoformat(), i.principal_minor, i.interest_minor, left))
    with sqlite3.connect(data_dir / "lending.db", timeout=60) as conn:
        conn.executemany(
            "INSERT INTO loans (loan_id, customer_id, account_id, principal_minor, currency, term_months, annual_rate, status,"
            " saga_id, created_at, updated_at, installment_minor, first_due_date) VALUES (?, ?, ?, 120000, 'EUR', 12, '0.06',"
            " 'DISBURSED', ?, ?, ?, ?, ?)",
            loan_rows,
        )
        conn.executemany(
            "INSERT INTO installments (loan_id, number, due_date, principal_minor, interest_minor, principal_after_minor)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            installment_rows,
        )
    with sqlite3.connect(data_dir / "account.db", timeout=60) as conn:
        conn.executemany(
            "INSERT INTO accounts (account_id, customer_id, type, status, currency, features_json, balance_minor, held_minor,"
            " floor_minor, opened_at, interest_bearing) VALUES (?, ?, 'PERSONAL_CHECKING', 'OPEN', 'EUR', ?, ?, 0, 0, ?, 0)",
            account_rows,
        )
        funded = sum(row[3] for row in account_rows)
        conn.execute("UPDATE accounts SET balance_minor = balance_minor - ? WHERE account_id = 'acc_CASH_EUR'", (funded,))


def copy_databases(data_dir: Path, into: Path) -> None:
    for name in ("account.db", "lending.db"):
        with sqlite3.connect(data_dir / name, timeout=60) as source, sqlite3.connect(into / name) as target:
            source.backup(target)


FLOOR_SQL = (
    f"CREATE TEMP TABLE due AS SELECT l.loan_id, l.account_id, i.number, i.penalty_minor - i.paid_penalty_minor AS fee,"
    f" i.interest_minor - i.paid_interest_minor AS interest, i.principal_minor - i.paid_principal_minor AS principal"
    f" FROM l.loans l JOIN l.installments i ON i.loan_id = l.loan_id"
    f" WHERE l.currency = 'EUR' AND l.status = 'DISBURSED' AND i.due_date <= :day AND {OPEN}",
    "CREATE TEMP TABLE paying AS SELECT d.loan_id, d.account_id, SUM(d.fee) AS fee, SUM(d.interest) AS interest,"
    " SUM(d.principal) AS principal, 'trf_I' || d.loan_id AS interest_trf, 'trf_P' || d.loan_id AS principal_trf"
    " FROM due d JOIN accounts a ON a.account_id = d.account_id GROUP BY d.loan_id, d.account_id, a.balance_minor,"
    " a.held_minor, a.floor_minor HAVING a.balance_minor - a.held_minor - SUM(d.fee + d.interest + d.principal) >= a.floor_minor",
    "UPDATE accounts SET balance_minor = balance_minor - p.fee - p.interest - p.principal FROM paying p"
    " WHERE accounts.account_id = p.account_id",
    "UPDATE accounts SET balance_minor = balance_minor + (SELECT SUM(interest) FROM paying) WHERE account_id = 'acc_INTEREST_INCOME_EUR'",
    "UPDATE accounts SET balance_minor = balance_minor + (SELECT SUM(principal) FROM paying) WHERE account_id = 'acc_LOAN_PRINCIPAL_EUR'",
    "INSERT INTO transfers (transfer_id, debit_account_id, credit_account_id, amount_minor, currency, description, posted_at)"
    " SELECT interest_trf, account_id, 'acc_INTEREST_INCOME_EUR', interest, 'EUR', 'loan collection', :at FROM paying"
    " UNION ALL SELECT principal_trf, account_id, 'acc_LOAN_PRINCIPAL_EUR', principal, 'EUR', 'loan collection', :at FROM paying",
    "INSERT INTO entries (account_id, transfer_id, amount_minor, balance_after_minor, counterparty_account_id, description,"
    " posted_at) SELECT account_id, interest_trf, -interest, 0, 'acc_INTEREST_INCOME_EUR', 'loan collection', :at FROM paying"
    " UNION ALL SELECT account_id, principal_trf, -principal, 0, 'acc_LOAN_PRINCIPAL_EUR', 'loan collection', :at FROM paying"
    " UNION ALL SELECT 'acc_INTEREST_INCOME_EUR', interest_trf, interest, 0, account_id, 'loan collection', :at FROM paying"
    " UNION ALL SELECT 'acc_LOAN_PRINCIPAL_EUR', principal_trf, principal, 0, account_id, 'loan collection', :at FROM paying",
    "UPDATE l.installments SET paid_penalty_minor = penalty_minor, paid_interest_minor = interest_minor,"
    " paid_principal_minor = principal_minor WHERE due_date <= :day AND loan_id IN (SELECT loan_id FROM paying)",
    "INSERT INTO l.repayments (repayment_id, loan_id, kind, status, amount_minor, currency, parts_json, scope, request_id,"
    " operation, fingerprint, created_at, posted_at) SELECT 'rpy_' || loan_id, loan_id, 'COLLECTION', 'POSTED',"
    " fee + interest + principal, 'EUR', '[]', 'svc:lending', 'col-' || loan_id, 'floor', :day, :at, :at FROM paying",
    "UPDATE l.installments SET overdue_since = due_date, penalty_minor = penalty_minor + :fee WHERE due_date <= :day"
    " AND overdue_since IS NULL AND loan_id IN (SELECT loan_id FROM due WHERE loan_id NOT IN (SELECT loan_id FROM paying))",
)


def floor(copies: Path, day: date) -> tuple[float, int, int]:
    """The floor's time, the loans it collected, and the minor units it collected."""
    conn = sqlite3.connect(copies / "account.db", isolation_level=None)
    conn.execute("ATTACH DATABASE ? AS l", (str(copies / "lending.db"),))
    params = {"day": day.isoformat(), "at": datetime.now(UTC).isoformat(), "fee": LATE_FEE_MINOR}
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    for statement in FLOOR_SQL:
        conn.execute(statement, {k: v for k, v in params.items() if f":{k}" in statement})
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    loans, collected = conn.execute("SELECT COUNT(*), COALESCE(SUM(fee + interest + principal), 0) FROM paying").fetchone()
    conn.close()
    return elapsed, loans, collected


async def run_api(target: str, day: date) -> tuple[float, lpb.CollectionRun]:
    async with admin_channel(target) as channel:
        request = lpb.RunCollectionRequest(
            request_id="bench", business_date=date_pb2.Date(year=day.year, month=day.month, day=day.day), currency_code="EUR"
        )
        started, last = time.perf_counter(), None
        async for answer in lgrpc.LendingServiceStub(channel).RunCollection(request, timeout=3600):
            last = answer.run
        assert last is not None
        return time.perf_counter() - started, last


async def measure(loans: int, today: date) -> tuple[float, lpb.CollectionRun, tuple[float, int, int]]:
    """The API run and the floor; the mail server the bank tells customers through runs here, as
    one outside the bank would (embedded, it would share the bank's process)."""
    mail = MailSimulator()
    await mail.start()
    try:
        with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as copies:
            with bank_process(data_dir, "--smtp", mail.url) as target:
                seed(Path(data_dir), loans, today)
                copy_databases(Path(data_dir), Path(copies))
                api_seconds, run = await run_api(target, today)
            return api_seconds, run, floor(Path(copies), today)
    finally:
        await mail.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loans", type=int, default=100_000, help="disbursed loans with an installment due today")
    args = parser.parse_args()
    today = datetime.now(UTC).date()
    api_seconds, run, (floor_seconds, floor_loans, floor_minor) = asyncio.run(measure(args.loans, today))
    print(f"daily collection of {args.loans} loans (one in ten short of funds), SQLite, {today.isoformat()}")
    print()
    print("| path | loans examined | collected | seconds | loans/s | × floor |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| RunCollection (gRPC, the bank) | {run.processed} | {run.collected.amount} EUR | {api_seconds:.2f}"
        f" | {run.processed / api_seconds:,.0f} | {api_seconds / floor_seconds:.1f} |"
    )
    print(
        f"| set-based floor (same data) | {args.loans} ({floor_loans} paid) | {Decimal(floor_minor) / 100} EUR"
        f" | {floor_seconds:.2f} | {args.loans / floor_seconds:,.0f} | 1.0 |"
    )


if __name__ == "__main__":
    main()
