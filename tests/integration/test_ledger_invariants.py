"""Thousands of random concurrent movements over gRPC, then the ledger's invariants, on SQLite and
PostgreSQL: debits equal credits, no balance below its floor, each request_id applied once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
import pytest
from google.rpc import error_details_pb2

from common.db.base import Tx
from common.db.databases import ContextDatabase
from common.grpc.client import bearer_channel
from common.grpc.status import rich_status, unpack_detail
from mesh.embedded import RunningBank
from ogpgy.account.v1 import account_service_pb2 as apb
from services.account.repository import AccountUnits
from tests.bank_helpers import Bank, eur

OPERATIONS = 2000
CONCURRENCY = 32
REFUSALS = {"INSUFFICIENT_FUNDS", "HOLD_ALREADY_RESOLVED"}


@dataclass
class Journal:
    """What the clients saw: the first answer per request_id, and every refusal."""

    answers: dict[str, str] = field(default_factory=dict)  # request_id -> transfer or hold id
    refused: dict[str, int] = field(default_factory=dict)
    open_holds: list[str] = field(default_factory=list)

    def record(self, request_id: str, made: str) -> None:
        first = self.answers.setdefault(request_id, made)
        assert first == made, f"retry of {request_id} answered {made}, first answer was {first}"


async def _call(journal: Journal, request_id: str, call: Callable[[], Awaitable[object]], made: Callable[[object], str]) -> None:
    try:
        journal.record(request_id, made(await call()))
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, f"{request_id}: {err.code()} {err.details()}"
        status = rich_status(err)
        info = unpack_detail(status, error_details_pb2.ErrorInfo) if status else None
        reason = info.reason if isinstance(info, error_details_pb2.ErrorInfo) else "?"
        assert reason in REFUSALS, f"{request_id}: unexpected refusal {reason}"
        journal.refused[reason] = journal.refused.get(reason, 0) + 1


def transfer_id(answer: object) -> str:
    """What a journal records of a movement's answer: the transfer it made."""
    return answer.transfer.transfer_id  # type: ignore[attr-defined]  # any of the movement responses


def _amount(rng: random.Random) -> str:
    cents = rng.choice([1, 99, 100, 2_500, 10_000, 25_000, 49_999, 50_000, 75_001])
    return f"{cents // 100}.{cents % 100:02d}"


async def _operation(i: int, rng: random.Random, client: Bank, accounts: list[str], journal: Journal, sent: list) -> None:
    kind = rng.choices(["transfer", "retry", "hold", "resolve", "withdraw", "deposit"], [40, 15, 12, 12, 11, 10])[0]
    a, b = rng.sample(accounts, 2)
    rid = f"op-{i}"
    if kind == "retry" and sent:
        rid, call, made = rng.choice(sent)
        await _call(journal, rid, call, made)
        return
    if kind == "hold":
        req = apb.PlaceHoldRequest(request_id=rid, debit_account_id=a, credit_account_id=b, amount=eur(_amount(rng)))
        call, made = (lambda: client.accounts.PlaceHold(req)), (lambda r: r.hold.hold_id)
        await _call(journal, rid, call, made)
        if rid in journal.answers:
            journal.open_holds.append(journal.answers[rid])
    elif kind == "resolve" and journal.open_holds:
        hold = journal.open_holds.pop(rng.randrange(len(journal.open_holds)))
        if rng.random() < 0.5:
            req = apb.CaptureHoldRequest(request_id=rid, hold_id=hold, amount=eur("0.01") if rng.random() < 0.3 else None)
            call, made = (lambda: client.accounts.CaptureHold(req)), (lambda r: r.transfer.transfer_id)
        else:
            req = apb.ReleaseHoldRequest(request_id=rid, hold_id=hold)
            call, made = (lambda: client.accounts.ReleaseHold(req)), (lambda r: r.hold.hold_id)
        await _call(journal, rid, call, made)
    elif kind == "withdraw":
        available = (await client.accounts.GetAccount(apb.GetAccountRequest(account_id=a))).account.available_balance.amount
        edge = available if rng.random() < 0.5 else _amount(rng)  # exactly to the floor, often
        if edge in ("0.00", "-0.00") or edge.startswith("-"):
            edge = "0.01"
        req = apb.WithdrawRequest(request_id=rid, account_id=a, amount=eur(edge))
        call, made = (lambda: client.accounts.Withdraw(req)), transfer_id
        await _call(journal, rid, call, made)
    elif kind == "deposit":
        req = apb.DepositRequest(request_id=rid, account_id=a, amount=eur(_amount(rng)))
        call, made = (lambda: client.accounts.Deposit(req)), transfer_id
        await _call(journal, rid, call, made)
    else:
        req = apb.TransferRequest(request_id=rid, debit_account_id=a, credit_account_id=b, amount=eur(_amount(rng)))
        call, made = (lambda: client.accounts.Transfer(req)), transfer_id
        await _call(journal, rid, call, made)
    if kind in ("transfer", "deposit", "withdraw"):
        sent.append((rid, call, made))


async def _ledger_facts(tx: Tx) -> dict[str, object]:
    """The oracle: recomputes from the rows what the ledger must satisfy."""
    drift = await tx.fetchall(
        "SELECT a.account_id FROM accounts a LEFT JOIN (SELECT account_id, SUM(amount_minor) AS total FROM entries"
        " GROUP BY account_id) e ON e.account_id = a.account_id WHERE a.balance_minor <> COALESCE(e.total, 0)"
    )
    held = await tx.fetchall(
        "SELECT a.account_id FROM accounts a LEFT JOIN (SELECT debit_account_id, SUM(amount_minor) AS total FROM holds"
        " WHERE status = 'PLACED' GROUP BY debit_account_id) h ON h.debit_account_id = a.account_id"
        " WHERE a.held_minor <> COALESCE(h.total, 0)"
    )
    below = await tx.fetchall(
        "SELECT account_id FROM accounts WHERE floor_minor IS NOT NULL AND balance_minor - held_minor < floor_minor"
    )
    unbalanced = await tx.fetchall(
        "SELECT transfer_id FROM entries GROUP BY transfer_id HAVING SUM(amount_minor) <> 0 OR COUNT(*) <> 2"
    )
    transfers = await tx.fetchone("SELECT COUNT(*) AS n FROM transfers")
    return {"drift": drift, "held": held, "below": below, "unbalanced": unbalanced, "transfers": transfers["n"]}


@pytest.mark.slow
async def test_random_concurrent_movements_keep_the_ledger_exact(bank: RunningBank, admin_token: str) -> None:
    rng = random.Random(20261128)
    journal, sent = Journal(), []
    async with bearer_channel(bank.target, admin_token) as channel:
        client = Bank(channel)
        accounts = []
        for n in range(8):
            customer = await client.verified_customer(f"inv-{n}")
            accounts.append((await client.default_account(customer)).account_id)  # overdraft 500
            accounts.append(await client.open(customer, f"inv-sav-{n}"))  # no overdraft
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(OPERATIONS):
            queue.put_nowait(i)

        async def worker() -> None:
            while not queue.empty():
                await _operation(queue.get_nowait(), rng, client, accounts, journal, sent)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        for hold in journal.open_holds:  # resolve what is left, so nothing stays reserved
            await _call(
                journal,
                f"end-{hold}",
                lambda hold=hold: client.accounts.ReleaseHold(apb.ReleaseHoldRequest(request_id=f"end-{hold}", hold_id=hold)),
                lambda r: r.hold.hold_id,
            )

    account_context = bank.contexts["account"]
    debits, credits, total = await account_context.resolve(AccountUnits).read(lambda uow: uow.accounts.totals())
    facts = await account_context.resolve(ContextDatabase).read(_ledger_facts)
    assert debits == credits and total == 0, "double entry: every debit has its credit"
    assert facts["drift"] == [] and facts["unbalanced"] == [], "balances are the sum of their entries"
    assert facts["held"] == [], "held amounts are the sum of open holds"
    assert facts["below"] == [], "no balance below its floor"
    movements = {rid for rid, made in journal.answers.items() if made.startswith("trf_")}
    assert facts["transfers"] == len(movements), "each request_id applied exactly once"
    assert journal.refused.get("INSUFFICIENT_FUNDS", 0) > 50, f"the run must exercise refusals too: {journal.refused}"
    assert len(movements) > 800, "most operations moved money"
