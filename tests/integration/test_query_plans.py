"""No statement on the request path of the RPCs the benchmark matrix measures (GetCustomer,
deposits, internal and external payments) reads a whole table: each is planned with an index on
SQLite, whatever the history behind it. Recorded from the bank's own units of work while the RPCs
run, then planned again with EXPLAIN QUERY PLAN on the same files."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from common.config import Settings
from common.db import sqlite as sqlite_db
from common.grpc.call_context import request_id_var
from mesh.embedded import start_embedded
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.customer.v1 import customer_service_pb2_grpc as cgrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from tests.bank_helpers import Bank, admin_channel, eur
from tests.conftest import ADMIN_PASSWORD

Statement = tuple[str, str, tuple[Any, ...]]  # (context, sql, params)
_FULL_SCAN = re.compile(r"SCAN (\w+)(?! USING)")


def _recording(monkeypatch: pytest.MonkeyPatch, seen: set[Statement]) -> None:
    """Every statement a unit of work runs for a request (a request id is set: an RPC, or the
    events it caused), beside running it."""
    for name in ("execute", "fetchone", "fetchall"):
        original: Callable[..., Awaitable[Any]] = getattr(sqlite_db.SqliteTx, name)

        def recorded(original: Callable[..., Awaitable[Any]] = original) -> Callable[..., Awaitable[Any]]:
            async def run(self: sqlite_db.SqliteTx, sql: str, *params: Any) -> Any:
                if request_id_var.get():
                    seen.add((self.context, sql, params))
                return await original(self, sql, *params)

            return run

        monkeypatch.setattr(sqlite_db.SqliteTx, name, recorded())


def _scans(data_dir: Path, statements: set[Statement]) -> list[str]:
    found = []
    for context, sql, params in sorted(statements, key=lambda s: (s[0], s[1])):
        if not re.match(r"\s*(SELECT|UPDATE|DELETE|WITH)", sql, re.IGNORECASE):
            continue
        with sqlite3.connect(data_dir / f"{context}.db") as db:
            plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
        found += [f"{context}: {' '.join(sql.split())[:120]} -> {step}" for step in plan if _FULL_SCAN.match(step)]
    return found


async def test_the_measured_rpcs_read_no_whole_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: set[Statement] = set()
    bank = await start_embedded(Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD))
    try:
        async with admin_channel(bank.target) as channel:
            client = Bank(channel)
            customer = await client.verified_customer("plans")
            account = (await client.default_account(customer)).account_id
            payee = (await client.default_account(await client.verified_customer("plans-payee"))).account_id
            await client.deposit(account, "100.00", "plans")
            _recording(monkeypatch, seen)
            await cgrpc.CustomerServiceStub(channel).GetCustomer(cpb.GetCustomerRequest(customer_id=customer))
            payments = pgrpc.PaymentServiceStub(channel)
            internal = ppb.InternalBeneficiary(account_id=payee)
            await payments.CreatePayment(
                ppb.CreatePaymentRequest(request_id="plans-in", debtor_account_id=account, internal=internal, amount=eur("1.00"))
            )
            external = ppb.ExternalBeneficiary(iban="DE89370400440532013000", name="Max Muster")
            await payments.CreatePayment(
                ppb.CreatePaymentRequest(request_id="plans-out", debtor_account_id=account, external=external, amount=eur("1.00"))
            )
            await client.deposit(account, "5.00", "plans-again")
    finally:
        await bank.stop(grace=1)
    assert len({sql for _, sql, _ in seen}) >= 10, "the RPCs' statements were recorded"
    assert _scans(tmp_path, seen) == []
