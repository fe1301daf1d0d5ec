"""Customers in the customer context's own database (loaded and saved in one transaction,
deciding nothing: the use cases hold the unit and the domain decides), and the sanctions list."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime

from common.db.base import Row, Tx
from common.db.databases import ContextDatabase
from common.db.units import Unit, Units
from common.di import BaseComponent, og_component
from services.customer.domain import (
    Address,
    Customer,
    DocumentType,
    IdentityDocument,
    Kyc,
    KycReason,
    KycStatus,
)
from services.customer.messages import OUTGOING


@dataclass(frozen=True)
class CustomerPage:
    customers: list[Customer]
    next_after: int | None


_COLUMNS = (
    "customer_id, given_name, family_name, email, phone, date_of_birth, document_type, document_number,"
    " document_country, address_json, kyc_status, kyc_reasons, kyc_checked_at, created_at, updated_at, version,"
    " relationship_manager_id"
)


def _row(c: Customer) -> tuple[object, ...]:
    address = {
        "lines": list(c.address.lines),
        "city": c.address.city,
        "postal_code": c.address.postal_code,
        "country_code": c.address.country_code,
    }
    return (
        c.customer_id,
        c.given_name,
        c.family_name,
        c.email,
        c.phone,
        c.date_of_birth.isoformat(),
        c.document.type.value if c.document.type else "",
        c.document.number,
        c.document.issuing_country_code,
        json.dumps(address),
        c.kyc.status.value,
        ",".join(r.value for r in c.kyc.reasons),
        c.kyc.checked_at.isoformat(),
        c.created_at.isoformat(),
        c.updated_at.isoformat(),
        c.version,
        c.relationship_manager_id,
    )


class CustomerCodec:
    """Customers as JSON of their stored row: what the shared (L2) cache holds."""

    def encode(self, customer: Customer) -> bytes:
        return json.dumps(dict(zip(_COLUMNS.split(", "), _row(customer), strict=True))).encode()

    def decode(self, data: bytes) -> Customer:
        return _customer(json.loads(data))


def _customer(row: Row) -> Customer:
    address = json.loads(row["address_json"])
    return Customer(
        customer_id=row["customer_id"],
        given_name=row["given_name"],
        family_name=row["family_name"],
        email=row["email"],
        phone=row["phone"],
        date_of_birth=date.fromisoformat(row["date_of_birth"]),
        document=IdentityDocument(DocumentType(row["document_type"]), row["document_number"], row["document_country"]),
        address=Address(tuple(address["lines"]), address["city"], address["postal_code"], address["country_code"]),
        kyc=Kyc(
            status=KycStatus(row["kyc_status"]),
            reasons=tuple(KycReason(r) for r in row["kyc_reasons"].split(",") if r),
            checked_at=datetime.fromisoformat(row["kyc_checked_at"]),
        ),
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        version=row["version"],
        relationship_manager_id=row["relationship_manager_id"],
    )


@dataclass(frozen=True)
class CustomerFilter:
    """Which customers a listing may show: by KYC status, and narrowed to what the caller may see."""

    status: KycStatus | None = None
    relationship_manager_id: str | None = None
    customer_id: str | None = None


class Customers:
    """The customers of one transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def get(self, customer_id: str) -> Customer | None:
        row = await self._tx.fetchone(f"SELECT {_COLUMNS} FROM customers WHERE customer_id = ?", customer_id)
        return _customer(row) if row else None

    async def document_holder(self, document: IdentityDocument) -> str | None:
        """The customer onboarded with this identity document, if any."""
        holder = await self._tx.fetchone(
            "SELECT customer_id FROM customers WHERE document_country = ? AND document_type = ? AND document_number = ?",
            document.issuing_country_code,
            document.type.value if document.type else "",
            document.number,
        )
        return str(holder["customer_id"]) if holder is not None else None

    async def add(self, customer: Customer) -> None:
        await self._tx.execute(f"INSERT INTO customers ({_COLUMNS}) VALUES ({', '.join('?' * 17)})", *_row(customer))

    async def update(self, customer: Customer, expected_version: int) -> bool:
        """Saves a change only over `expected_version` (a conditional write); False if the stored
        customer is at another version."""
        row = _row(customer)
        changed = await self._tx.execute(
            "UPDATE customers SET email = ?, phone = ?, address_json = ?, kyc_status = ?, kyc_reasons = ?, kyc_checked_at = ?,"
            " updated_at = ?, version = ?, relationship_manager_id = ? WHERE customer_id = ? AND version = ?",
            row[3],
            row[4],
            row[9],
            row[10],
            row[11],
            row[12],
            row[14],
            customer.version,
            customer.relationship_manager_id,
            customer.customer_id,
            expected_version,
        )
        return changed == 1

    async def page(self, after: int, limit: int, only: CustomerFilter) -> CustomerPage:
        where, args = "seq > ?", list[object]([after])
        for column, value in (
            ("kyc_status", only.status.value if only.status else None),
            ("relationship_manager_id", only.relationship_manager_id),
            ("customer_id", only.customer_id),
        ):
            if value is not None:
                where, args = f"{where} AND {column} = ?", [*args, value]
        sql = f"SELECT seq, {_COLUMNS} FROM customers WHERE {where} ORDER BY seq LIMIT ?"
        rows = await self._tx.fetchall(sql, *args, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return CustomerPage([_customer(r) for r in rows], rows[-1]["seq"] if more else None)


class CustomerUnit(Unit):
    """One transaction of the customer context."""

    outgoing = OUTGOING

    def __init__(self, tx: Tx) -> None:
        super().__init__(tx)
        self.customers = Customers(tx)


@og_component()
class CustomerUnits(BaseComponent, Units[CustomerUnit]):
    """The customer context's units of work, on its own database."""

    def __init__(self, db: ContextDatabase) -> None:
        Units.__init__(self, db, CustomerUnit)
