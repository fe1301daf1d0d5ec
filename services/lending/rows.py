"""The lending context's rows as the domain reads them: loans, installments and their state,
repayments and their allocation, mapped once for every unit of work."""

from __future__ import annotations

import json
from datetime import date, datetime

from common.db.base import Row
from common.money import Money
from services.lending.domain import (
    Loan,
    LoanStatus,
    Repayment,
    RepaymentKind,
    RepaymentStatus,
    ScheduledInstallment,
)
from services.lending.schedule import Installment
from services.lending.servicing import Allocation, InstallmentState, Part

LOAN_COLUMNS = (
    "loan_id, customer_id, account_id, principal_minor, currency, term_months, annual_rate, status, saga_id,"
    " created_at, updated_at, installment_minor, first_due_date, applied_by, first_approver"
)
INSTALLMENT_COLUMNS = "loan_id, number, due_date, principal_minor, interest_minor, principal_after_minor, period_start"
STATE_COLUMNS = (
    f"{INSTALLMENT_COLUMNS}, penalty_minor, paid_penalty_minor, paid_interest_minor, paid_principal_minor,"
    " waived_interest_minor, overdue_since"
)
REPAYMENT_COLUMNS = "repayment_id, loan_id, kind, status, amount_minor, currency, parts_json, created_at"
REFUSED = "REJECTED"  # a repayment's row kept with the refusal its request_id answers for good
OPEN_INSTALLMENT = "penalty_minor + interest_minor + principal_minor > paid_penalty_minor + paid_interest_minor + paid_principal_minor + waived_interest_minor"


def loan_of(row: Row) -> Loan:
    return Loan(
        row["loan_id"],
        row["customer_id"],
        row["account_id"],
        Money(row["currency"], row["principal_minor"]),
        row["term_months"],
        row["annual_rate"],
        LoanStatus(row["status"]),
        row["saga_id"],
        datetime.fromisoformat(row["created_at"]),
        datetime.fromisoformat(row["updated_at"]),
        row["installment_minor"],
        date.fromisoformat(row["first_due_date"]) if row["first_due_date"] else None,
        row["applied_by"],
        row["first_approver"],
    )


def _period_start(row: Row) -> date | None:
    return date.fromisoformat(row["period_start"]) if row["period_start"] else None


def state_of(row: Row) -> InstallmentState:
    return InstallmentState(
        row["number"],
        date.fromisoformat(row["due_date"]),
        row["principal_minor"],
        row["interest_minor"],
        _period_start(row),
        row["penalty_minor"],
        row["paid_principal_minor"],
        row["paid_interest_minor"],
        row["paid_penalty_minor"],
        row["waived_interest_minor"],
        date.fromisoformat(row["overdue_since"]) if row["overdue_since"] else None,
    )


def scheduled_of(row: Row, currency: str) -> ScheduledInstallment:
    return ScheduledInstallment(
        Installment(
            row["number"], date.fromisoformat(row["due_date"]), row["principal_minor"], row["interest_minor"], _period_start(row)
        ),
        row["principal_after_minor"],
        currency,
        state_of(row),
    )


def parts_json(allocation: Allocation) -> str:
    return json.dumps([[p.number, p.penalty, p.interest, p.principal, p.waived_interest] for p in allocation.parts])


def allocation_of(parts_json: str) -> Allocation:
    return Allocation(tuple(Part(*values) for values in json.loads(parts_json)))


def repayment_of(row: Row) -> Repayment:
    return Repayment(
        row["repayment_id"],
        row["loan_id"],
        RepaymentKind(row["kind"]),
        RepaymentStatus(row["status"]),
        Money(row["currency"], row["amount_minor"]),
        allocation_of(row["parts_json"]),
        datetime.fromisoformat(row["created_at"]),
    )
