"""Bulk payments as files, both ways: a customer's SEPA credit-transfer file (ISO 20022 pain.001,
version .03 or .09) read into the contract's `PaymentBatchLines`, and a batch's status report
written as pain.002.001.03 from the contract's messages.

A file is untrusted bytes from the outside world, so its bounds come before any parsing (size,
and the number of transactions by a plain byte count), the parser resolves no entity, loads no
DTD and reaches no network, a document with a DOCTYPE is refused, and the schema is checked
offline against the XSD that the `sepaxml` package ships. Only then are its values read; what
they mean (IBAN check digits, sums against the header) is the domain's to judge, on the same
lines as the protobuf form's.
"""

from __future__ import annotations

import functools
from datetime import datetime
from importlib import resources

from lxml import etree

from common.validation import Violations
from ogpgy.payment.v1 import bulk_payment_service_pb2 as bpb
from ogpgy.payment.v1 import payment_service_pb2 as pb
from ogpgy.type.v1 import money_pb2

MAX_FILE_BYTES = 3 * 1024 * 1024  # the contract's bound; a gRPC message carries 4 MiB
MAX_TRANSACTIONS = 10_000
MAX_SCHEMA_VIOLATIONS = 20
PAIN001 = {  # namespace -> the XSD that sepaxml ships for it
    "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03": "pain.001.001.03.xsd",
    "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09": "pain.001.001.09.xsd",
}
PAIN002 = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.03"
INTERNAL_PREFIX = "acc_"  # an account of this bank, named in CdtrAcct/Id/Othr/Id


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False, remove_comments=True
    )


@functools.cache
def _schema(file_name: str) -> etree.XMLSchema:
    """The XSD from the installed sepaxml package: validation needs no network."""
    xsd = resources.files("sepaxml") / "schemas" / file_name
    return etree.XMLSchema(etree.fromstring(xsd.read_bytes(), _parser()))


def _document(v: Violations, data: bytes) -> tuple[etree._Element, str] | None:
    """The parsed, schema-valid document and its namespace; None (with violations) otherwise."""
    if not v.check(len(data) <= MAX_FILE_BYTES, "pain001", f"at most {MAX_FILE_BYTES} bytes, not {len(data)}"):
        return None
    count = data.count(b"<CdtTrfTxInf>") + data.count(b":CdtTrfTxInf>") // 2
    if not v.check(count <= MAX_TRANSACTIONS, "pain001", f"at most {MAX_TRANSACTIONS} transactions, not {count}"):
        return None
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as bad:
        v.add("pain001", f"not well-formed XML: {bad}")
        return None
    if not v.check(root.getroottree().docinfo.doctype == "", "pain001", "a document type declaration is not accepted"):
        return None
    namespace = etree.QName(root).namespace or ""
    if not v.check(namespace in PAIN001, "pain001", f"a pain.001 document in one of {', '.join(sorted(PAIN001))}"):
        return None
    schema = _schema(PAIN001[namespace])
    if not schema.validate(root):
        for error in list(schema.error_log)[:MAX_SCHEMA_VIOLATIONS]:
            v.add("pain001", f"line {error.line}: {error.message}", "SCHEMA_INVALID")
        return None
    return root, namespace


def read_pain001(v: Violations, data: bytes) -> bpb.PaymentBatchLines | None:
    """The file's lines and header as the contract's protobuf form; None (with violations) when
    the file is too large, malformed, not pain.001 or not valid against its schema, or names a
    creditor account this bank cannot pay (neither an IBAN nor one of its own accounts)."""
    found = _document(v, data)
    if found is None:
        return None
    root, namespace = found
    ns = {"p": namespace}

    def text(node: etree._Element, path: str) -> str:
        return str(node.findtext(path, default="", namespaces=ns)).strip()

    batch = bpb.PaymentBatchLines(
        number_of_transactions=_count(text(root, "p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs")),
        control_sum=text(root, "p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum"),
        message_id=text(root, "p:CstmrCdtTrfInitn/p:GrpHdr/p:MsgId"),
    )
    for n, tx in enumerate(root.iterfind("p:CstmrCdtTrfInitn/p:PmtInf/p:CdtTrfTxInf", ns)):
        amount = tx.find("p:Amt/p:InstdAmt", ns)  # the schema requires it (else Amt/EqvtAmt: no amount here)
        line = bpb.PaymentBatchLine(
            end_to_end_id=text(tx, "p:PmtId/p:EndToEndId"),
            amount=money_pb2.Money(
                currency_code=str(amount.get("Ccy", "")) if amount is not None else "",
                amount=str(amount.text or "").strip() if amount is not None else "",
            ),
            reference=text(tx, "p:RmtInf/p:Ustrd"),
        )
        iban, other = text(tx, "p:CdtrAcct/p:Id/p:IBAN"), text(tx, "p:CdtrAcct/p:Id/p:Othr/p:Id")
        name = text(tx, "p:Cdtr/p:Nm")
        if iban:
            v.check(0 < len(name) <= 70, f"lines[{n}].external.name", "the creditor's name (Cdtr/Nm), 1 to 70 characters")
            line.external.CopyFrom(pb.ExternalBeneficiary(iban=iban, name=name))
        elif v.check(other.startswith(INTERNAL_PREFIX), f"lines[{n}].internal.account_id", "an IBAN, or an account of this bank"):
            line.internal.CopyFrom(pb.InternalBeneficiary(account_id=other))
        batch.lines.append(line)
    v.check(len(batch.lines) <= MAX_TRANSACTIONS, "pain001", f"at most {MAX_TRANSACTIONS} transactions")
    return batch


# --- the status report --------------------------------------------------------------------------

GROUP_STATUS = {
    bpb.PAYMENT_BATCH_STATUS_COMPLETED: "ACSC",
    bpb.PAYMENT_BATCH_STATUS_PARTIALLY_COMPLETED: "PART",
    bpb.PAYMENT_BATCH_STATUS_REFUSED: "RJCT",
    bpb.PAYMENT_BATCH_STATUS_IN_PROGRESS: "PDNG",
}
LINE_STATUS = {  # NEEDS_OPERATOR is not final for the customer: an operator finishes it
    pb.PAYMENT_STATUS_COMPLETED: "ACSC",
    pb.PAYMENT_STATUS_FAILED: "RJCT",
    pb.PAYMENT_STATUS_REJECTED: "RJCT",
    pb.PAYMENT_STATUS_PENDING: "PDNG",
    pb.PAYMENT_STATUS_QUEUED: "PDNG",
    pb.PAYMENT_STATUS_NEEDS_OPERATOR: "PDNG",
    pb.PAYMENT_STATUS_REFUNDED: "RJCT",  # an operator gave the funds back: not paid
}


def _count(text: str) -> int:
    """NbOfTxs as the contract's int32 holds it: the schema allows 15 digits, a batch at most
    MAX lines, so anything beyond int32 is simply a count that cannot match (int32's maximum)."""
    return min(int(text), 2**31 - 1)


def _sub(parent: etree._Element, tag: str, text: str = "", **attributes: str) -> etree._Element:
    node = etree.SubElement(parent, f"{{{PAIN002}}}{tag}", attributes)
    if text:
        node.text = text
    return node


def _reason(parent: etree._Element, reason: str) -> None:
    if reason:
        _sub(_sub(parent, "StsRsnInf"), "AddtlInf", reason[:105])


def pain002(batch: bpb.PaymentBatch, lines: list[bpb.PaymentBatchLineStatus], at: datetime) -> bytes:
    """The batch's status report: the group's status (ACSC, PART, RJCT, or PDNG while lines are on
    their way), then each line's by its end-to-end id, with the failure reason of one not paid."""
    root = etree.Element(f"{{{PAIN002}}}Document", nsmap={None: PAIN002})
    report = _sub(root, "CstmrPmtStsRpt")
    header = _sub(report, "GrpHdr")
    _sub(header, "MsgId", batch.batch_id[:35])
    _sub(header, "CreDtTm", at.strftime("%Y-%m-%dT%H:%M:%S"))
    group = _sub(report, "OrgnlGrpInfAndSts")
    _sub(group, "OrgnlMsgId", batch.message_id or batch.batch_id[:35])
    _sub(group, "OrgnlMsgNmId", "pain.001")
    _sub(group, "OrgnlNbOfTxs", str(batch.line_count))
    _sub(group, "OrgnlCtrlSum", batch.control_sum.amount)
    _sub(group, "GrpSts", GROUP_STATUS[batch.status])
    _reason(group, batch.failure_reason)
    payments = _sub(report, "OrgnlPmtInfAndSts")
    _sub(payments, "OrgnlPmtInfId", batch.batch_id[:35])
    for line in lines:
        tx = _sub(payments, "TxInfAndSts")
        _sub(tx, "OrgnlEndToEndId", line.end_to_end_id)
        _sub(tx, "TxSts", LINE_STATUS[line.payment.status])
        _reason(tx, line.payment.failure_reason)
        if line.payment.transfer_id:
            _sub(tx, "AcctSvcrRef", line.payment.transfer_id[:35])
        amount = _sub(_sub(tx, "OrgnlTxRef"), "Amt")
        _sub(amount, "InstdAmt", line.payment.amount.amount, Ccy=line.payment.amount.currency_code)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
