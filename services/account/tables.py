"""The ledger's tables: their columns, and rows as domain objects (one vocabulary for the
repository's units of work and the set-based postings)."""

from __future__ import annotations

import functools
import json
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal

from common.db.base import Row
from common.money import Money
from services.account.domain import Account, AccountFeatures, AccountStatus, AccountType, Hold, HoldStatus, Remittance, Transfer

ACCOUNT_COLUMNS = (
    "account_id, customer_id, type, status, currency, features_json, balance_minor, held_minor, floor_minor, opened_at"
)
TRANSFER_COLUMNS = (
    "transfer_id, debit_account_id, credit_account_id, amount_minor, currency, description,"
    " reverses_transfer_id, hold_id, posted_at, actor"
)
# What narrative.Remittance keeps, on holds, transfers and entries alike (the set-based postings
# of interest and fees write none: their columns' defaults are theirs).
REMITTANCE_COLUMNS = "counterparty_name, counterparty_iban, reference"
TRANSFER_READ_COLUMNS = f"{TRANSFER_COLUMNS}, reversed_by, {REMITTANCE_COLUMNS}"  # what transfer_of reads
ENTRY_COLUMNS = "account_id, transfer_id, amount_minor, balance_after_minor, counterparty_account_id, description, posted_at"
HOLD_COLUMNS = (
    "hold_id, debit_account_id, credit_account_id, amount_minor, currency, status, description, captured_minor, transfer_id,"
    " owner_context, placed_by, placed_at, counterparty_name, counterparty_iban, reference"
)


def features_json(features: AccountFeatures) -> str:
    data = asdict(features)
    data["annual_interest_rate"] = str(features.annual_interest_rate)
    return json.dumps(data, sort_keys=True)


@functools.lru_cache(maxsize=1024)
def features(text: str) -> AccountFeatures:
    """Parsed once per distinct text: accounts of a product share it, and every movement reads
    the accounts it moves (AccountFeatures is frozen, so sharing one is safe)."""
    data = json.loads(text)
    data["annual_interest_rate"] = Decimal(data["annual_interest_rate"])
    return AccountFeatures(**data)


def account_of(row: Row) -> Account:
    return Account(
        account_id=row["account_id"],
        customer_id=row["customer_id"],
        type=AccountType(row["type"]),
        status=AccountStatus(row["status"]),
        currency=row["currency"],
        features=features(row["features_json"]),
        balance=row["balance_minor"],
        held=row["held_minor"],
        opened_at=datetime.fromisoformat(row["opened_at"]),
    )


def transfer_of(row: Row) -> Transfer:
    return Transfer(
        transfer_id=row["transfer_id"],
        debit_account_id=row["debit_account_id"],
        credit_account_id=row["credit_account_id"],
        amount=Money(row["currency"], row["amount_minor"]),
        description=row["description"],
        posted_at=datetime.fromisoformat(row["posted_at"]),
        reverses_transfer_id=row["reverses_transfer_id"] or "",
        hold_id=row["hold_id"] or "",
        reversed_by=row["reversed_by"] or "",
        actor=row["actor"],
        remittance=remittance_of(row),
    )


def hold_of(row: Row) -> Hold:
    captured = row["captured_minor"]
    return Hold(
        hold_id=row["hold_id"],
        debit_account_id=row["debit_account_id"],
        credit_account_id=row["credit_account_id"],
        amount=Money(row["currency"], row["amount_minor"]),
        status=HoldStatus(row["status"]),
        description=row["description"],
        captured=Money(row["currency"], captured) if captured is not None else None,
        transfer_id=row["transfer_id"] or "",
        owner_context=row["owner_context"],
        placed_by=row["placed_by"],
        placed_at=datetime.fromisoformat(row["placed_at"]),
        remittance=remittance_of(row),
    )


def remittance_of(row: Row) -> Remittance:
    return Remittance(row["counterparty_name"], row["counterparty_iban"], row["reference"])


def remittance_row(r: Remittance) -> tuple[str, str, str]:
    return (r.counterparty_name, r.counterparty_iban, r.reference)
