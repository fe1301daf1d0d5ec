"""A unit of work runs in the context variables of the call that submitted it, on either engine
(SQLite drives it on a database thread): the audit record a claimed key writes names the call's
actor, its relaying contexts, its request id and the context whose database it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.db.base import Database, Tx
from common.db.idempotency import claim
from common.db.postgres import PostgresDatabase
from common.db.sqlite import SqliteDatabase
from common.events.envelope import Envelope
from common.grpc.call_context import request_id_var
from common.idempotency import IdempotencyKey
from common.security.context import SecurityContext, caller_var
from og.audit.v1.audit_pb2 import ChangeRecorded
from tests.servers import PostgresServer


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return SqliteDatabase(tmp_path / "ledger.db")
    server: PostgresServer = request.getfixturevalue("postgres")
    return PostgresDatabase(server.new_database(), "ledger")


async def _seen(tx: Tx) -> tuple[str, str | None, SecurityContext | None]:
    return tx.context, request_id_var.get(), caller_var.get()


async def _recorded(tx: Tx) -> list[ChangeRecorded]:
    rows = await tx.fetchall("SELECT event_id, event_type, payload, headers, occurred_at FROM outbox")
    return [Envelope(r["event_id"], r["event_type"], bytes(r["payload"]), r["occurred_at"]).decode(ChangeRecorded) for r in rows]


async def test_a_unit_of_work_sees_its_callers_variables_and_a_claim_records_the_change(database: Database) -> None:
    await database.open([])
    try:
        alice = SecurityContext("usr_alice", "alice", ("customer",), "cus_a", service="payment", via=("payment",))
        request_id_var.set("req-42")
        caller_var.set(alice)
        assert await database.write(_seen) == ("ledger", "req-42", alice)
        assert await database.read(_seen) == ("ledger", "req-42", alice)
        key = IdempotencyKey("pay-1-hold", "PlaceHold", "digest", alice.principal)
        assert await database.write(claim, key, "hld_1") is None
        assert await database.write(claim, key, "hld_2") == "hld_1"  # a replay records nothing more
        [record] = await database.read(_recorded)
        assert (record.context, record.operation, record.resource, record.actor, list(record.on_behalf_of)) == (
            "ledger",
            "PlaceHold",
            "hld_1",
            "usr_alice",
            ["payment"],
        )
        assert (record.request_id, record.service) == ("pay-1-hold", "payment")
    finally:
        await database.close()
