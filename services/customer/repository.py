"""Persistence of customers: the Protocol the service needs, and its SQLite implementation."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Protocol

from common.db.base import Row, Tx, stored
from common.db.databases import ContextDatabase
from common.db.idempotency import claim, once, replayed_resource
from common.di import BaseComponent, og_component
from common.errors import Aborted, AlreadyExists, PreconditionFailed
from common.idempotency import IdempotencyKey
from services.customer.domain import (
    Address,
    Customer,
    CustomerEvent,
    DocumentType,
    IdentityDocument,
    Kyc,
    KycReason,
    KycStatus,
    SanctionsEntry,
    SanctionsList,
    version_mismatch,
)
from services.customer.messages import OUTGOING

SANCTIONS_FILE = Path(__file__).parent / "data" / "sanctions.csv"


@dataclass(frozen=True)
class CustomerPage:
    customers: list[Customer]
    next_after: int | None


class CustomerRepository(Protocol):
    async def add(self, customer: Customer, key: IdempotencyKey, events: list[CustomerEvent]) -> Customer:
        """Stores a new customer, its key and its events at once; a replayed key returns the stored one."""

    async def get(self, customer_id: str) -> Customer | None: ...

    async def replay(self, key: IdempotencyKey) -> Customer | None:
        """The customer an earlier request with this key produced, if any."""

    async def save(
        self, customer: Customer, expected_version: int, key: IdempotencyKey, events: list[CustomerEvent], pinned: bool = False
    ) -> Customer:
        """Stores a change and its events, once for `key`, if the stored version is still
        `expected_version`; else Aborted (read again and retry), or, when the caller `pinned` that
        version, VERSION_MISMATCH kept as the key's answer."""

    async def refuse(self, key: IdempotencyKey, customer_id: str, refused: PreconditionFailed) -> Customer:
        """Keeps `refused` (decided on the customer as read, or by another context) as the key's
        answer; where the key holds an answer already, that one (the customer it changed, or the
        refusal it kept) instead."""

    async def page(self, after: int, limit: int, only: CustomerFilter) -> CustomerPage: ...


class SanctionsSource(Protocol):
    def load(self) -> SanctionsList: ...


@og_component()
class CsvSanctionsSource(SanctionsSource):
    """The sanctions list shipped with the context as a data file."""

    def __init__(self) -> None:
        self.path = SANCTIONS_FILE

    def load(self) -> SanctionsList:
        with self.path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        return SanctionsList.of(
            SanctionsEntry(
                full_name=row["full_name"],
                date_of_birth=date.fromisoformat(row["date_of_birth"]) if row["date_of_birth"] else None,
            )
            for row in rows
        )


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


async def _select(tx: Tx, customer_id: str) -> Customer | None:
    row = await tx.fetchone(f"SELECT {_COLUMNS} FROM customers WHERE customer_id = ?", customer_id)
    return _customer(row) if row else None


async def _insert(tx: Tx, customer: Customer, key: IdempotencyKey, events: list[CustomerEvent]) -> Customer:
    """Claims the key first: a concurrent twin of this very request waits for it, then replays
    the first result; a refusal raises, so the claim rolls back with it."""
    replayed = await claim(tx, key, customer.customer_id)
    if replayed is not None:
        return stored(await _select(tx, replayed), replayed)
    doc = customer.document
    holder = await tx.fetchone(
        "SELECT customer_id FROM customers WHERE document_country = ? AND document_type = ? AND document_number = ?",
        doc.issuing_country_code,
        doc.type.value if doc.type else "",
        doc.number,
    )
    if holder is not None:
        raise AlreadyExists(
            "CUSTOMER_ALREADY_EXISTS",
            "a customer with this identity document is already onboarded",
            {"customer_id": holder["customer_id"]},
        )
    await tx.execute(f"INSERT INTO customers ({_COLUMNS}) VALUES ({', '.join('?' * 17)})", *_row(customer))
    await OUTGOING.append(tx, events)
    return customer


async def _update(
    tx: Tx, customer: Customer, expected_version: int, key: IdempotencyKey, events: list[CustomerEvent], pinned: bool
) -> Customer:
    async def make() -> Customer:
        row = _row(customer)
        changed = await tx.execute(
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
        if changed != 1:
            if pinned:
                now = stored(await _select(tx, customer.customer_id), customer.customer_id)
                raise version_mismatch(customer.customer_id, now.version, expected_version)
            raise Aborted(
                "CONCURRENT_MODIFICATION",
                "the customer changed meanwhile; read it again and retry",
                {"customer_id": customer.customer_id},
            )
        await OUTGOING.append(tx, events)
        return customer

    return await once(tx, key, customer.customer_id, make, lambda done: _stored(tx, done))


async def _refuse(tx: Tx, key: IdempotencyKey, customer_id: str, refused: PreconditionFailed) -> Customer:
    async def make() -> Customer:
        raise refused

    return await once(tx, key, customer_id, make, lambda done: _stored(tx, done))


async def _stored(tx: Tx, customer_id: str) -> Customer:
    return stored(await _select(tx, customer_id), customer_id)


async def _replay(tx: Tx, key: IdempotencyKey) -> Customer | None:
    replayed = await replayed_resource(tx, key)
    return await _select(tx, replayed) if replayed else None


@dataclass(frozen=True)
class CustomerFilter:
    """Which customers a listing may show: by KYC status, and narrowed to what the caller may see."""

    status: KycStatus | None = None
    relationship_manager_id: str | None = None
    customer_id: str | None = None


async def _page(tx: Tx, after: int, limit: int, only: CustomerFilter) -> CustomerPage:
    where, args = "seq > ?", list[object]([after])
    for column, value in (
        ("kyc_status", only.status.value if only.status else None),
        ("relationship_manager_id", only.relationship_manager_id),
        ("customer_id", only.customer_id),
    ):
        if value is not None:
            where, args = f"{where} AND {column} = ?", [*args, value]
    rows = await tx.fetchall(f"SELECT seq, {_COLUMNS} FROM customers WHERE {where} ORDER BY seq LIMIT ?", *args, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return CustomerPage([_customer(r) for r in rows], rows[-1]["seq"] if more else None)


@og_component()
class SqlCustomerRepository(BaseComponent, CustomerRepository):
    """Customers in the context's own database (SQLite file or PostgreSQL schema)."""

    def __init__(self, db: ContextDatabase) -> None:
        self._db = db

    async def add(self, customer: Customer, key: IdempotencyKey, events: list[CustomerEvent]) -> Customer:
        return await self._db.write(_insert, customer, key, events)

    async def get(self, customer_id: str) -> Customer | None:
        return await self._db.read(_select, customer_id)

    async def replay(self, key: IdempotencyKey) -> Customer | None:
        return await self._db.read(_replay, key)

    async def save(
        self, customer: Customer, expected_version: int, key: IdempotencyKey, events: list[CustomerEvent], pinned: bool = False
    ) -> Customer:
        return await self._db.write(_update, customer, expected_version, key, events, pinned)

    async def refuse(self, key: IdempotencyKey, customer_id: str, refused: PreconditionFailed) -> Customer:
        return await self._db.write(_refuse, key, customer_id, refused)

    async def page(self, after: int, limit: int, only: CustomerFilter) -> CustomerPage:
        return await self._db.read(_page, after, limit, only)
