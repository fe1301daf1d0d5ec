"""Faults under a bounded mixed load on the distributed mesh: kill -9 of every process in turn (each
restarted), a restart of Redis, one of PostgreSQL and one of the mail server. Calls may fail while
a part is down; what must hold afterwards is checked in the databases themselves:
- the ledger balances (per currency, per transfer, per account, holds);
- no event lost or applied twice: every verified customer has exactly one default account;
- every payment is COMPLETED, FAILED or REJECTED, every saga terminal, no hold left placed;
- every interest run that was started completes when run again, once per account and date, and so
  does every collection run;
- the loans are in the ledger: the loan book holds minus the principal outstanding, the income
  accounts the interest and fees paid, and no repayment is left pending (a lost answer is settled);
- the network and the ledger reconcile: every payment the network settled is booked exactly once
  (and nothing booked went unsettled), whatever was killed while it was on its way;
- every notification is delivered, and the mail server's mailbox holds each exactly once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import grpc
import psycopg
import pytest
from grpc import aio

from mesh.distributed import DATABASE, Mesh
from ogpgy.interest.v1 import interest_service_pb2 as ipb
from ogpgy.interest.v1 import interest_service_pb2_grpc as igrpc
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from ogpgy.type.v1 import date_pb2
from tests.integration.test_mesh_modes import CONTEXTS, mesh_client
from tests.ledger_checks import ledger_checks, loan_checks
from tests.local_mesh import loopback_mesh
from tests.mixed_load import Load, setup_accounts

pytestmark = pytest.mark.slow
WORKERS = 6


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    running = loopback_mesh("ogpgy-faults-", log_level="WARNING")  # local Redis (AOF) and PostgreSQL, restarted below
    running.start()
    yield running
    running.stop()


def _faults(mesh: Mesh) -> list[str]:
    """kill -9 of every process in turn, then Redis, then PostgreSQL; returns what was done."""
    done = []
    for replica in list(mesh.replicas):
        time.sleep(0.7)
        mesh.restart(replica.process, replica.index)
        done.append(f"kill -9 {replica.process}")
    for name, server in (("redis", mesh.redis), ("postgres", mesh.postgres), ("the mail server", mesh.mail)):
        assert server is not None
        time.sleep(0.7)
        server.stop()
        time.sleep(0.5)
        server.start()
        done.append(f"restart {name}")
    return done


def _query(dsn: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


UNSETTLED = {
    "payments not final": "SELECT payment_id, status FROM payment.payments WHERE status NOT IN ('COMPLETED', 'FAILED', 'REJECTED')",
    "sagas not terminal": "SELECT saga_id, status FROM lending.saga_runs WHERE status NOT IN ('COMPLETED', 'COMPENSATED', 'FAILED_NEEDS_OPERATOR')",
    "holds still placed": "SELECT hold_id, debit_account_id FROM account.holds WHERE status = 'PLACED'",
    "repayments pending": "SELECT repayment_id, loan_id FROM lending.repayments WHERE status = 'PENDING'",
    "notifications not delivered": (
        "SELECT notification_id, status, failure_reason FROM notification.notifications WHERE status NOT IN ('SENT', 'SUPPRESSED')"
    ),
    "verified customers without exactly one account": (
        "SELECT c.customer_id, COUNT(a.account_id) FROM customer.customers c LEFT JOIN account.accounts a"
        " ON a.customer_id = c.customer_id WHERE c.kyc_status = 'VERIFIED' GROUP BY c.customer_id HAVING COUNT(a.account_id) != 1"
    ),
}
LEDGER = (
    ledger_checks("account")
    | loan_checks("account", "lending")
    | {
        "completed payments without their transfer": (
            "SELECT p.payment_id FROM payment.payments p LEFT JOIN account.transfers t ON t.transfer_id = p.transfer_id"
            " WHERE p.status = 'COMPLETED' AND t.transfer_id IS NULL"
        ),
    }
)


async def test_kills_and_restarts_under_load_leave_the_bank_consistent(mesh: Mesh) -> None:
    assert mesh.postgres is not None
    dsn = mesh.postgres.database(DATABASE)
    targets = {c: mesh.config.target(c) for c in CONTEXTS}
    async with mesh_client(targets, mesh.tls) as ch:
        load = Load(ch, await setup_accounts(ch))
        workers = [asyncio.create_task(load.worker()) for _ in range(WORKERS)]
        done = await asyncio.to_thread(_faults, mesh)
        await asyncio.sleep(2)
        load.stop.set()
        await asyncio.gather(*workers)
        print("\nfaults:", ", ".join(done), "\noutcomes:", dict(sorted(load.outcomes.items())))
        assert sum(n for k, n in load.outcomes.items() if k.endswith("OK")) > 50, "the load ran"
        assert not load.bugs, f"INTERNAL/UNKNOWN answers are bugs: {load.bugs}"
        for day in load.dates:  # runs cut by a kill resume when run again
            if not await _completed(load.interest, day):
                request = ipb.RunDailyInterestRequest(request_id="again", business_date=day)
                runs = [answer.run async for answer in load.interest.RunDailyInterest(request)]
                assert runs[-1].status == ipb.INTEREST_RUN_STATUS_COMPLETED
        for day in load.collections:
            await _collection_completed(load.loans, day)
    deadline = time.monotonic() + 90
    while (left := _unsettled(dsn)) and time.monotonic() < deadline:  # noqa: ASYNC110 - other processes' databases
        await asyncio.sleep(1)  # queued payments wait for the breaker; sagas and events finish by themselves
    assert not left, f"still unsettled after 90 s: {left}"
    broken = {name: rows for name, sql in LEDGER.items() if (rows := _query(dsn, sql))}
    assert not broken, broken
    _every_notification_arrived_once(mesh, dsn)
    async with mesh_client(targets, mesh.tls) as ch:
        report = await pgrpc.PaymentServiceStub(ch["payment"]).ReconcileNetwork(ppb.ReconcileNetworkRequest())
    print(
        "reconciliation:",
        report.network_settled,
        "settled,",
        report.matched,
        "matched,",
        len(report.discrepancies),
        "discrepancies",
    )
    assert report.network_settled == report.matched > 0 and report.in_flight == 0, report
    assert not report.discrepancies, list(report.discrepancies)


def _every_notification_arrived_once(mesh: Mesh, dsn: str) -> None:
    """What the mail server accepted, across its restart, against what the bank recorded as sent:
    each sent notification is in the mailbox exactly once (by Message-ID). Delivery is at least once:
    a kill -9 between the server's answer and the record sends that one message again, so raw
    receipts may exceed the mailbox by at most one per kill of the notification process."""
    assert mesh.mail is not None and mesh.mail.record is not None
    sent = {
        f"<{row[0]}@ogpgy.bank>"
        for row in _query(dsn, "SELECT notification_id FROM notification.notifications WHERE status = 'SENT'")
    }
    receipts = [json.loads(line)["message_id"] for line in mesh.mail.record.read_text().splitlines()]
    print("notifications:", len(sent), "sent,", len(receipts), "messages received,", len(set(receipts)), "distinct")
    assert sent, "the load made notifications"
    assert set(receipts) == sent, {"sent, never received": sent - set(receipts), "received, not sent": set(receipts) - sent}
    assert len(receipts) - len(set(receipts)) <= 1, "at most the one message in flight when the notification process was killed"


def _unsettled(dsn: str) -> dict[str, list[tuple[object, ...]]]:
    return {name: rows for name, sql in UNSETTLED.items() if (rows := _query(dsn, sql))}


async def _completed(interest: igrpc.InterestServiceStub, day: date_pb2.Date) -> bool:
    try:
        run = (await interest.GetInterestRun(ipb.GetInterestRunRequest(business_date=day))).run
    except aio.AioRpcError:
        return False
    return run.status == ipb.INTEREST_RUN_STATUS_COMPLETED


async def _collection_completed(loans: lgrpc.LendingServiceStub, day: date_pb2.Date) -> None:
    """Runs the collection of `day` to its end (a run cut by a kill resumes); done before is done."""
    request = lpb.RunCollectionRequest(request_id="again", business_date=day, currency_code="EUR")
    try:
        runs = [answer.run async for answer in loans.RunCollection(request)]
    except aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
        return
    assert runs[-1].status == lpb.COLLECTION_RUN_STATUS_COMPLETED
