"""pain.001.001.03 credit-transfer files as a customer's software writes them, for tests and the
bulk payments benchmark: lines to IBANs (other banks) or to this bank's accounts (Othr/Id)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from xml.sax.saxutils import escape

NS = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"


@dataclass(frozen=True)
class Line:
    end_to_end_id: str
    amount: str
    iban: str = ""  # another bank's account, else `account_id`
    account_id: str = ""
    name: str = "Max Muster"
    currency: str = "EUR"
    reference: str = ""


def _creditor(line: Line) -> str:
    if line.iban:
        return f"<Cdtr><Nm>{escape(line.name)}</Nm></Cdtr><CdtrAcct><Id><IBAN>{line.iban}</IBAN></Id></CdtrAcct>"
    return f"<Cdtr><Nm>{escape(line.name)}</Nm></Cdtr><CdtrAcct><Id><Othr><Id>{line.account_id}</Id></Othr></Id></CdtrAcct>"


def pain001(lines: list[Line], *, message_id: str = "MSG-1", count: int | None = None, control_sum: str | None = None) -> bytes:
    """The file; `count` and `control_sum` default to the lines' own (give others to lie)."""
    total = sum((Decimal(line.amount) for line in lines), Decimal(0))
    stated_sum = control_sum if control_sum is not None else f"{total:.2f}"
    stated_count = count if count is not None else len(lines)
    transactions = "".join(
        f"<CdtTrfTxInf><PmtId><EndToEndId>{escape(line.end_to_end_id)}</EndToEndId></PmtId>"
        f'<Amt><InstdAmt Ccy="{line.currency}">{line.amount}</InstdAmt></Amt>{_creditor(line)}'
        + (f"<RmtInf><Ustrd>{escape(line.reference)}</Ustrd></RmtInf>" if line.reference else "")
        + "</CdtTrfTxInf>"
        for line in lines
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Document xmlns="{NS}"><CstmrCdtTrfInitn>'
        f"<GrpHdr><MsgId>{message_id}</MsgId><CreDtTm>2026-11-02T10:00:00</CreDtTm><NbOfTxs>{stated_count}</NbOfTxs>"
        f"<CtrlSum>{stated_sum}</CtrlSum><InitgPty><Nm>OgPgy Customer</Nm></InitgPty></GrpHdr>"
        f"<PmtInf><PmtInfId>{message_id}-1</PmtInfId><PmtMtd>TRF</PmtMtd><ReqdExctnDt>2026-11-02</ReqdExctnDt>"
        "<Dbtr><Nm>OgPgy Customer</Nm></Dbtr><DbtrAcct><Id><Othr><Id>debtor</Id></Othr></Id></DbtrAcct>"
        "<DbtrAgt><FinInstnId><Othr><Id>NOTPROVIDED</Id></Othr></FinInstnId></DbtrAgt>"
        f"{transactions}</PmtInf></CstmrCdtTrfInitn></Document>"
    ).encode()
