"""What must hold after any history, once the bank is quiet: read from every context's tables and
from the answers the history received. Each check returns what breaks it (empty: it holds)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg

from common.config import Settings
from tests.ledger_checks import broken_ledger, broken_loans
from tests.simulation.batches import interest_and_fees_once
from tests.simulation.driver import WITH_DETAILS, Answers, Driver, Outcome
from tests.simulation.events import published_and_handled_once, redeliver
from tests.simulation.model import INTERNAL_KINDS

Rows = list[tuple[Any, ...]]
# Answers that say nothing about the request: the call's own deadline or cancellation, a retry
# asked for, a process or token that changed meanwhile.
INDEFINITE = {"DEADLINE_EXCEEDED", "CANCELLED", "UNAVAILABLE", "ABORTED", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED"}
# Who may move each of the bank's own accounts, and how (see services/account/domain.py MOVED_BY).
DIRECT = {"acc_CASH_EUR": {"Deposit", "Withdraw"}}
# Whose holds move which account, which way: money out to the network, a loan paid out.
HOLD_OWNERS = {("acc_CLEARING_EUR", "credit"): "payment", ("acc_LOAN_PRINCIPAL_EUR", "debit"): "lending"}
CHARGED = {"acc_LOAN_PRINCIPAL_EUR", "acc_INTEREST_INCOME_EUR", "acc_PENALTY_INCOME_EUR"}
BATCHED = {"acc_FEE_INCOME_EUR", "acc_INTEREST_EXPENSE_EUR"}
WAITING = {
    "payments pending or queued": (
        "payment",
        "SELECT payment_id, status FROM {payment}payments WHERE status IN ('PENDING', 'QUEUED')",
    ),
    "repayments pending": ("lending", "SELECT repayment_id FROM {lending}repayments WHERE status = 'PENDING'"),
    "loans disbursing": ("lending", "SELECT loan_id FROM {lending}loans WHERE status = 'DISBURSING'"),
    "sagas running": ("lending", "SELECT saga_id, status FROM {lending}saga_runs WHERE status IN ('RUNNING', 'COMPENSATING')"),
}
# Never at rest when nothing failed: only injected faults or a defect leave work for a person.
FOR_AN_OPERATOR = {
    "sagas left to an operator": (
        "lending",
        "SELECT saga_id, error FROM {lending}saga_runs WHERE status = 'FAILED_NEEDS_OPERATOR'",
    ),
    "payments left to an operator": ("payment", "SELECT payment_id FROM {payment}payments WHERE status = 'NEEDS_OPERATOR'"),
}
CONTEXTS = ("account", "customer", "identity", "interest", "lending", "notification", "payment")


def _query(settings: Settings, context: str, sql: str) -> Rows:
    if settings.database == "postgres":
        with psycopg.connect(settings.postgres_dsn) as conn:
            return conn.execute(sql.format(**{c: f"{c}." for c in CONTEXTS})).fetchall()
    path = Path(settings.data_dir) / f"{context}.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return conn.execute(sql.format(**dict.fromkeys(CONTEXTS, ""))).fetchall()


async def query(settings: Settings, context: str, sql: str) -> Rows:
    return await asyncio.to_thread(_query, settings, context, sql)


async def waiting(settings: Settings) -> dict[str, Rows]:
    found = {}
    for name, (context, sql) in WAITING.items():
        if rows := await query(settings, context, sql):
            found[name] = rows
    for context in CONTEXTS:
        if rows := await query(settings, context, "SELECT event_type FROM {" + context + "}outbox WHERE published_at IS NULL"):
            found[f"{context} events unpublished"] = rows
    return found


async def quiesce(settings: Settings, driver: Driver, within: float = 30.0) -> dict[str, Rows]:
    """Waits until nothing is pending, moving the clock on so that workers take over lost answers;
    what still waits after `within` seconds is a violation ("nothing PENDING at rest")."""
    deadline = asyncio.get_running_loop().time() + within
    while (left := await waiting(settings)) and asyncio.get_running_loop().time() < deadline:
        await driver.settle_clock()
        await asyncio.sleep(0.2)
    return left


def _definite(outcomes: list[Outcome], batch: bool) -> set[Outcome]:
    """The answers that say how a request ended. Of a batch run's request: its copies wait for
    the one that drives the run and answer as it, so none is told to retry (ABORTED) and, once
    one ran it, none hears RUN_IN_PROGRESS; a rival request hears RUN_IN_PROGRESS while the run
    goes on (come back later), then how it ended."""
    if not batch:
        return {o for o in outcomes if o.code not in INDEFINITE}
    ran = any(o.code == "OK" for o in outcomes)
    return {o for o in outcomes if o.code not in INDEFINITE - {"ABORTED"} and (ran or o.reason != "RUN_IN_PROGRESS")}


def answered_alike(answers: Answers) -> list[str]:
    """Every definite answer to one principal's request_id is the same answer."""
    broken = []
    for key, outcomes in answers.by_key.items():
        definite = _definite(outcomes, key in answers.streaming)
        if len({(o.code, o.reason, o.resource if o.code == "OK" else "") for o in definite}) > 1:
            broken.append(f"{key}: {[str(o) for o in outcomes]} ({answers.ops[key].describe()})")
    return broken


def no_internal(answers: Answers) -> list[str]:
    """No INTERNAL or UNKNOWN; every refusal with google.rpc details."""
    broken = []
    for key, outcomes in answers.by_key.items():
        for o in outcomes:
            if o.code in ("INTERNAL", "UNKNOWN", "DATA_LOSS") or (o.code in WITH_DETAILS and not o.detailed):
                broken.append(f"{key}: {o} (details: {o.detailed}) ({answers.ops[key].describe()})")
    return broken


def one_password_wins(answers: Answers) -> list[str]:
    """Of password changes racing from the same current password (one wave), one wins."""
    broken = []
    by_race: dict[tuple[str, str, int], list[str]] = {}
    for user, current, new, wave in answers.passwords:
        by_race.setdefault((user, current, wave), []).append(new)
    for (user, _current, wave), news in by_race.items():
        if len(news) > 1:
            broken.append(f"{user} in wave {wave}: {len(news)} changes from one password all succeeded: {news}")
    return broken


async def an_admin_remains(settings: Settings, war: Iterable[str]) -> list[str]:
    """Two admins acting on each other leave at least one of them an enabled admin: an actor must
    be one when the change is written, and nobody disables or demotes themself."""
    ids = ",".join(f"'{u}'" for u in war)
    rows = await query(settings, "identity", f"SELECT user_id, roles, disabled FROM {{identity}}users WHERE user_id IN ({ids})")
    enabled = [r for r in rows if not r[2] and "ADMIN" in r[1].upper()]
    return [] if enabled else [f"both admins gone: {rows}"]


async def internal_accounts_by_contract(settings: Settings) -> list[str]:
    """Every transfer touching one of the bank's own accounts was made the way its contract says:
    cash by Deposit and Withdraw, the clearing account by the payment context's holds, the loan
    book by lending's holds and charges, income by charges, fees and interest by their batches;
    a reversal as what it reverses. The treasury never moves."""
    transfers = await query(
        settings,
        "account",
        "SELECT transfer_id, debit_account_id, credit_account_id, hold_id, reverses_transfer_id FROM {account}transfers",
    )
    keys = dict(await query(settings, "account", "SELECT resource_id, operation FROM {account}idempotency_keys"))
    holds = dict(await query(settings, "account", "SELECT hold_id, owner_context FROM {account}holds"))
    charged = {
        t
        for (ids,) in await query(settings, "account", "SELECT transfer_ids FROM {account}charges")
        for t in re.findall(r"trf_\w+", ids)
    }
    origin = {t[0]: t for t in transfers}
    broken = []
    for transfer_id, debit, credit, hold, reverses in transfers:
        made = origin.get(reverses) if reverses else None
        for internal in {debit, credit} & _INTERNAL:
            source = made or (transfer_id, debit, credit, hold, None)
            if not _lawful(internal, source, keys, holds, charged):
                broken.append(
                    f"{transfer_id} moved {internal} ({keys.get(source[0], 'no key')}, hold of {holds.get(source[3] or '', '-')})"
                )
    return broken


_INTERNAL = {f"acc_{kind}_EUR" for kind in INTERNAL_KINDS}


def _lawful(internal: str, made: tuple[Any, ...], keys: dict[str, str], holds: dict[str, str], charged: set[str]) -> bool:
    transfer_id, debit, _, hold, _ = made
    if keys.get(transfer_id) in DIRECT.get(internal, set()):
        return True
    side = "debit" if internal == debit else "credit"
    if hold and holds.get(hold) == HOLD_OWNERS.get((internal, side)):
        return True
    if transfer_id in charged:
        return internal in CHARGED
    return internal in BATCHED and transfer_id not in keys and not hold


async def actors_had_the_right(settings: Settings, admins: set[str]) -> list[str]:
    """From the audit trail: every Transfer, Withdraw, hold and payment was asked by an admin or
    by the owner of the account it debits (through a context relaying them, or directly)."""
    users = dict(await query(settings, "identity", "SELECT user_id, customer_id FROM {identity}users"))
    admins = admins | {
        u
        for u, roles in await query(settings, "identity", "SELECT user_id, roles FROM {identity}users")
        if "ADMIN" in roles.upper()
    }
    owners = dict(await query(settings, "account", "SELECT account_id, customer_id FROM {account}accounts"))
    debited = dict(await query(settings, "account", "SELECT transfer_id, debit_account_id FROM {account}transfers"))
    debited |= dict(await query(settings, "account", "SELECT hold_id, debit_account_id FROM {account}holds"))
    debited |= dict(await query(settings, "payment", "SELECT payment_id, debtor_account_id FROM {payment}payments"))
    audit = await query(
        settings,
        "identity",
        "SELECT operation, resource, actor FROM {identity}audit_events"
        " WHERE operation IN ('Transfer', 'Withdraw', 'PlaceHold', 'CreatePayment')",
    )
    broken = []
    for operation, resource, actor in audit:
        account = debited.get(resource)
        if account is None or actor in admins:
            continue
        if not actor or users.get(actor) != owners.get(account):
            broken.append(f"{operation} {resource} from {account} (of {owners.get(account)}) by {actor or 'nobody'}")
    return broken


async def reconciled(driver: Driver) -> list[str]:
    """The clearing account equals what was booked less what was settled: the network agrees."""
    outcome = await driver.reconcile()
    return [] if outcome == "" else [outcome]


async def everything(settings: Settings, driver: Driver, admins: set[str]) -> dict[str, list[str]]:
    """Every invariant, by name: what breaks it. The history's events are delivered again once it
    is quiet (at least once, as a relay that crashed before marking them would)."""
    left = await quiesce(settings, driver)
    if not left:
        await redeliver(settings, CONTEXTS)
        left = await quiesce(settings, driver)
    checks: dict[str, list[str]] = {
        "nothing pending at rest": [f"{k}: {v[:5]}" for k, v in left.items()],
        "nothing left to an operator": [
            f"{name}: {rows[:3]}"
            for name, (context, sql) in FOR_AN_OPERATOR.items()
            if (rows := await query(settings, context, sql))
        ],
        "no INTERNAL, every refusal detailed": no_internal(driver.answers),
        "one answer per principal's request_id": answered_alike(driver.answers),
        "one password change wins a race": one_password_wins(driver.answers),
        "books balanced, balances equal entries": [f"{k}: {v[:5]}" for k, v in (await broken_ledger(settings)).items()],
        "loan accounts equal the loans": [f"{k}: {v[:5]}" for k, v in (await broken_loans(settings)).items()],
        "internal accounts moved by contract": await internal_accounts_by_contract(settings),
        "the network reconciles": await reconciled(driver),
        "an admin of the two remains": await an_admin_remains(settings, driver.made.war),
        "actors had the right": await actors_had_the_right(settings, admins),
        "every event published once, handled once": await published_and_handled_once(query, settings, CONTEXTS),
        "interest and fees once per account and day or month": await interest_and_fees_once(query, settings),
    }
    return {name: broken for name, broken in checks.items() if broken}
