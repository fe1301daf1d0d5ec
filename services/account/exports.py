"""A statement as a file: CSV, or ISO 20022 camt.053.001.08 XML (bank-to-customer statement),
rendered from the contract's own messages (the entries and balances GetStatement answers), so
that a file says exactly what the RPC says."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from xml.etree import ElementTree as ET

from ogpgy.account.v1 import account_service_pb2 as pb
from ogpgy.type.v1 import money_pb2

CAMT053 = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
CSV_COLUMNS = (
    "kind",
    "posted_at",
    "transfer_id",
    "counterparty_account_id",
    "description",
    "amount",
    "currency",
    "balance_after",
    "counterparty_name",
    "counterparty_iban",
    "reference",
)
# What ExportStatement answers in one message, well within gRPC's 4 MiB (a camt.053 entry is under 1 KiB).
MAX_EXPORTED_ENTRIES = 2000
FORMATS = {pb.STATEMENT_FORMAT_CSV: ("text/csv; charset=utf-8", "csv"), pb.STATEMENT_FORMAT_CAMT053: ("application/xml", "xml")}
MAX_TEXT = 140  # camt.053's Max140Text (AddtlNtryInf, Ustrd)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _unsigned(money: money_pb2.Money) -> tuple[str, str]:
    """(amount without sign, CRDT or DBIT): how camt.053 writes a signed amount."""
    negative = money.amount.startswith("-")
    return money.amount.lstrip("-"), "DBIT" if negative else "CRDT"


def _cell(text: str) -> str:
    """A text another person wrote (a payer's reference, a payee's name), as a spreadsheet cannot
    take it for a formula: one starting with = + - @ (or a tab or carriage return) gets a leading
    apostrophe, as OWASP advises against CSV injection. Amounts are written as they are."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def statement_csv(statement: pb.GetStatementResponse, first: date, last: date) -> bytes:
    """An OPENING row (at the start of `first`), one ENTRY row per entry, a CLOSING row."""
    out = io.StringIO()
    rows = csv.writer(out, lineterminator="\r\n")
    rows.writerow(CSV_COLUMNS)
    currency = statement.opening_balance.currency_code
    rows.writerow(("OPENING", f"{first}T00:00:00Z", "", "", "", "", currency, statement.opening_balance.amount, "", "", ""))
    for e in statement.entries:
        posted = _iso(e.post_time.ToDatetime())
        rows.writerow(
            (
                "ENTRY",
                posted,
                e.transfer_id,
                e.counterparty_account_id,
                _cell(e.description),
                e.amount.amount,
                currency,
                e.balance_after.amount,
                _cell(e.counterparty_name),
                e.counterparty_iban,
                _cell(e.reference),
            )
        )
    rows.writerow(("CLOSING", f"{last}T23:59:59Z", "", "", "", "", currency, statement.closing_balance.amount, "", "", ""))
    return out.getvalue().encode()


def _text(parent: ET.Element, tag: str, text: str = "", **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    if text:
        element.text = text
    return element


def _path(parent: ET.Element, tags: str, text: str) -> ET.Element:
    """Nested elements named by a slash-separated path, the last one holding `text`."""
    *outer, inner = tags.split("/")
    for tag in outer:
        parent = ET.SubElement(parent, tag)
    return _text(parent, inner, text)


def _party(parties: ET.Element, role: str, name: str, account_id: str, iban: str) -> None:
    """One side of a transaction (role Dbtr or Cdtr): its name when known, then its account, by
    IBAN when the party is outside the bank, else by the ledger's account id."""
    if name:
        _path(parties, f"{role}/Pty/Nm", name[:MAX_TEXT])
    _path(parties, f"{role}Acct/Id/IBAN" if iban else f"{role}Acct/Id/Othr/Id", iban or account_id)


def _balance(parent: ET.Element, code: str, money: money_pb2.Money, day: date) -> None:
    amount, sign = _unsigned(money)
    balance = ET.SubElement(parent, "Bal")
    _path(balance, "Tp/CdOrPrtry/Cd", code)
    _text(balance, "Amt", amount, Ccy=money.currency_code)
    _text(balance, "CdtDbtInd", sign)
    _path(balance, "Dt/Dt", day.isoformat())


def _entry(statement: ET.Element, e: pb.Entry, account_id: str) -> None:
    amount, sign = _unsigned(e.amount)
    posted = e.post_time.ToDatetime()
    entry = ET.SubElement(statement, "Ntry")
    _text(entry, "NtryRef", e.transfer_id)
    _text(entry, "Amt", amount, Ccy=e.amount.currency_code)
    _text(entry, "CdtDbtInd", sign)
    _path(entry, "Sts/Cd", "BOOK")
    _path(entry, "BookgDt/DtTm", _iso(posted))
    _path(entry, "ValDt/Dt", posted.date().isoformat())
    _text(entry, "AcctSvcrRef", e.transfer_id)
    _path(entry, "BkTxCd/Prtry/Cd", "TRANSFER")
    tx = ET.SubElement(ET.SubElement(entry, "NtryDtls"), "TxDtls")
    _path(tx, "Refs/AcctSvcrRef", e.transfer_id)
    _text(tx, "Amt", amount, Ccy=e.amount.currency_code)
    _text(tx, "CdtDbtInd", sign)
    parties = ET.SubElement(tx, "RltdPties")
    ours, theirs = ("", account_id, ""), (e.counterparty_name, e.counterparty_account_id, e.counterparty_iban)
    debtor, creditor = (ours, theirs) if sign == "DBIT" else (theirs, ours)
    _party(parties, "Dbtr", *debtor)
    _party(parties, "Cdtr", *creditor)
    remittance = e.reference or e.description  # what the payer said; else what the ledger says
    if remittance:
        _path(tx, "RmtInf/Ustrd", remittance[:MAX_TEXT])
    if e.description:
        _text(entry, "AddtlNtryInf", e.description[:MAX_TEXT])


def statement_camt053(statement: pb.GetStatementResponse, first: date, last: date, created: datetime, message_id: str) -> bytes:
    """camt.053.001.08: a group header, one statement of the account with its opening (OPBD)
    and closing (CLBD) balances, a transaction summary and one booked entry per entry: the other
    party's name (`Dbtr|Cdtr/Pty/Nm`) and account (`IBAN` outside the bank, else `Othr/Id`), the
    request's reference as `RmtInf/Ustrd` (the description when it carried none) and the
    description as `AddtlNtryInf`."""
    document = ET.Element("Document", {"xmlns": CAMT053})
    root = ET.SubElement(document, "BkToCstmrStmt")
    header = ET.SubElement(root, "GrpHdr")
    _text(header, "MsgId", message_id)
    _text(header, "CreDtTm", _iso(created))
    stmt = ET.SubElement(root, "Stmt")
    _text(stmt, "Id", message_id)
    _text(stmt, "CreDtTm", _iso(created))
    span = ET.SubElement(stmt, "FrToDt")
    _text(span, "FrDtTm", f"{first}T00:00:00Z")
    _text(span, "ToDtTm", f"{last}T23:59:59Z")
    account = ET.SubElement(stmt, "Acct")
    _path(account, "Id/Othr/Id", statement.account_id)
    _text(account, "Ccy", statement.opening_balance.currency_code)
    _balance(stmt, "OPBD", statement.opening_balance, first)
    _balance(stmt, "CLBD", statement.closing_balance, last)
    summary = ET.SubElement(stmt, "TxsSummry")
    _path(summary, "TtlNtries/NbOfNtries", str(len(statement.entries)))
    credits = sum(1 for e in statement.entries if not e.amount.amount.startswith("-"))
    for tag, count, total in (
        ("TtlCdtNtries", credits, statement.total_credits),
        ("TtlDbtNtries", len(statement.entries) - credits, statement.total_debits),
    ):
        sums = ET.SubElement(summary, tag)
        _text(sums, "NbOfNtries", str(count))
        _text(sums, "Sum", total.amount)
    for e in statement.entries:
        _entry(stmt, e, statement.account_id)
    return bytes(ET.tostring(document, encoding="utf-8", xml_declaration=True))


def exported(
    statement: pb.GetStatementResponse,
    format_: pb.StatementFormat.ValueType,
    first: date,
    last: date,
    created: datetime,
    message_id: str,
) -> tuple[bytes, str, str]:
    """The file of `statement` in a format of FORMATS: its content, media type and file suffix."""
    if format_ == pb.STATEMENT_FORMAT_CSV:
        content = statement_csv(statement, first, last)
    else:
        content = statement_camt053(statement, first, last, created, message_id)
    return (content, *FORMATS[format_])
