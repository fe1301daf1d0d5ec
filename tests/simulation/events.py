"""Every event published once and handled once, read from the databases at quiescence.

Who consumes what comes from the contexts' own declarations (`consumes=`, derived from each
handler's marked methods), never from a list kept here; what is written here is how each
consumer's handling shows in its tables (its trace), and a subscription without one is itself a
violation, so a new consumer cannot slip by unchecked. Delivery is at least once: before these
checks the history's events are delivered again (see `redeliver`), as a relay that crashed
between publishing and marking would, so a consumer that does not drop a repeat shows here.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from google.protobuf.message import Message

from common.config import Settings
from common.di import context_spec
from common.events.bus import REDELIVERED_TO
from common.events.envelope import event_type_of
from mesh.embedded import ALL_MODULES
from og.audit.v1.audit_pb2 import ChangeRecorded
from ogpgy.customer.v1 import customer_service_pb2 as cpb

Query = Callable[[Settings, str, str], Any]


def subscriptions() -> dict[tuple[str, str], type[Message]]:
    """(consumer, event type) -> its message class, as every context declares it consumes."""
    return {
        (spec.name, event_type_of(message)): message
        for spec in (context_spec(module) for module in ALL_MODULES)
        for message in spec.consumes
    }


@dataclass(frozen=True)
class Published:
    context: str  # whose outbox
    event_id: str
    message: Message


@dataclass
class Traces:
    """What the consumers wrote, by the event that caused it."""

    inbox: Counter[tuple[str, str]] = field(default_factory=Counter)  # (consumer, event_id)
    default_accounts: dict[str, list[str]] = field(default_factory=dict)  # event_id -> accounts opened for it
    owners: dict[str, str] = field(default_factory=dict)  # account_id -> customer_id ('' for the bank's)
    known_customers: set[str] = field(default_factory=set)
    audit_ids: set[str] = field(default_factory=set)
    notifications: dict[str, list[str]] = field(default_factory=dict)  # source event id -> customers told
    undelivered: set[tuple[str, str]] = field(default_factory=set)  # (consumer, event id) of letters waiting or dropped


def _verifies(message: Any) -> bool:
    return bool(message.kyc_status == cpb.KYC_STATUS_VERIFIED)


def _default_account(event: Published, t: Traces) -> list[str]:
    """A verified customer gets one default account per verifying event, recorded in the inbox."""
    if not _verifies(event.message):
        return [f"account handled unverifying {event.event_id}"] if t.inbox[("account", event.event_id)] else []
    message: Any = event.message
    opened, customer = t.default_accounts.get(event.event_id, []), message.customer_id
    handled = t.inbox[("account", event.event_id)]
    broken = [] if handled == 1 else [f"account inbox has {event.event_id} x{handled}"]
    if len(opened) != 1 or any(t.owners.get(a) != customer for a in opened):
        broken.append(f"{event.event_id} (customer {customer}) opened default accounts {opened}")
    return broken


def _known_customer(event: Published, t: Traces) -> list[str]:
    message: Any = event.message
    customer = message.customer_id
    return [] if customer in t.known_customers else [f"identity never learnt customer {customer} ({event.event_id})"]


def _audited(event: Published, t: Traces) -> list[str]:
    return [] if "aud_" + event.event_id.removeprefix("evt_") in t.audit_ids else [f"no audit event for {event.event_id}"]


def _notified(event: Published, t: Traces) -> list[str]:
    """One notification per event about a customer: none for a rejected applicant, none for a
    payment out of one of the bank's own accounts."""
    m: Any = event.message
    if "kyc_status" in m.DESCRIPTOR.fields_by_name and m.kyc_status == cpb.KYC_STATUS_REJECTED:
        customer = ""
    elif "debtor_account_id" in m.DESCRIPTOR.fields_by_name:
        customer = t.owners.get(m.debtor_account_id, "")
    else:
        customer = m.customer_id
    told = t.notifications.get(event.event_id, [])
    if told != ([customer] if customer else []):
        return [f"{event.message.DESCRIPTOR.name} {event.event_id} for {customer or 'nobody'} told {told}"]
    return []


def _no_trace(_event: Published, _t: Traces) -> list[str]:
    return []


# How a consumer's handling of an event shows in its tables, by (consumer, event name).
TRACES: dict[tuple[str, str], Callable[[Published, Traces], list[str]]] = {
    ("account", "CustomerOnboarded"): _default_account,
    ("account", "CustomerKycReviewed"): _default_account,
    ("account", "CustomerUpdated"): _no_trace,  # a cached relationship manager forgotten: nothing stored
    ("identity", "CustomerOnboarded"): _known_customer,
    ("identity", "ChangeRecorded"): _audited,
}
NOTIFIED = "CustomerOnboarded PaymentCompleted PaymentFailed PaymentQueued LoanDisbursed LoanDisbursementFailed LoanRepaid"
TRACES |= {("notification", name): _notified for name in (NOTIFIED + " InstallmentOverdue LoanPaidOff").split()}


async def _published(query: Query, settings: Settings, contexts: tuple[str, ...]) -> tuple[list[Published], list[str]]:
    """Every event of every outbox, decoded when someone consumes it; and what breaks "published
    once" (an event never marked, an event id twice)."""
    kinds = {t: m for (_, t), m in subscriptions().items()}
    events, broken, seen = [], [], Counter[str]()
    for context in contexts:
        rows = await query(
            settings, context, "SELECT event_id, event_type, payload, published_at, headers FROM {" + context + "}outbox"
        )
        for event_id, event_type, payload, published_at, headers in rows:
            replayed = REDELIVERED_TO in json.loads(headers)  # an operator's replay: the same event, sent again
            seen[event_id] += 0 if replayed else 1
            if published_at is None:
                broken.append(f"{context} {event_type} {event_id} never published")
            elif event_type in kinds and not replayed:
                events.append(Published(context, event_id, kinds[event_type].FromString(bytes(payload))))
    broken += [f"event id {e} in the outboxes {n} times" for e, n in seen.items() if n > 1]
    return events, broken


async def _traces(query: Query, settings: Settings, events: list[Published]) -> Traces:
    t = Traces()
    for consumer, event_id in await query(settings, "account", "SELECT consumer, event_id FROM {account}inbox"):
        t.inbox[(consumer, event_id)] += 1
    t.owners = dict(await query(settings, "account", "SELECT account_id, customer_id FROM {account}accounts"))
    for e in events:
        m = e.message
        if isinstance(m, ChangeRecorded) and e.context == "account" and m.operation == "OpenDefaultAccount":
            t.default_accounts.setdefault(m.request_id, []).append(m.resource)
    t.known_customers = {c for (c,) in await query(settings, "identity", "SELECT customer_id FROM {identity}known_customers")}
    t.audit_ids = {a for (a,) in await query(settings, "identity", "SELECT audit_event_id FROM {identity}audit_events")}
    rows = await query(settings, "notification", "SELECT source_event_id, customer_id FROM {notification}notifications")
    for source, customer in rows:
        t.notifications.setdefault(source, []).append(customer)
    letters = await query(settings, "notification", "SELECT consumer, event_id, state FROM {notification}dead_letters")
    replayed = {(c, e) for c, e, state in letters if state == "REPLAYED"}
    t.undelivered = {(c, e) for c, e, state in letters if state != "REPLAYED"} - replayed
    return t


async def published_and_handled_once(query: Query, settings: Settings, contexts: tuple[str, ...]) -> list[str]:
    """Every outbox event published once; every one a consumer subscribes to handled by it once,
    its effect there once; no consumer's trace of an event nobody published."""
    events, broken = await _published(query, settings, contexts)
    subscribed = subscriptions()
    untraced = [(c, t) for c, t in subscribed if (c, t.rsplit(".", 1)[-1]) not in TRACES]
    broken += [f"{c} consumes {t} and nothing says how its handling shows" for c, t in untraced]
    traces = await _traces(query, settings, events)
    by_type: dict[str, list[str]] = {}
    for consumer, event_type in subscribed:
        by_type.setdefault(event_type, []).append(consumer)
    for event in events:
        name = event.message.DESCRIPTOR.name
        for consumer in by_type[event_type_of(type(event.message))]:
            if (consumer, event.event_id) in traces.undelivered:  # an operator has it (waiting) or dropped it
                continue
            broken += TRACES.get((consumer, name), _no_trace)(event, traces)
    ids = {e.event_id for e in events}
    broken += [f"{c} handled {e}, which no outbox holds" for (c, e) in traces.inbox if e not in ids]
    broken += [f"a notification from {e}, which no outbox holds" for e in traces.notifications if e not in ids]
    return broken


def _unpublish(settings: Settings, contexts: tuple[str, ...]) -> None:
    sql = "UPDATE {prefix}outbox SET published_at = NULL"
    if settings.database == "postgres":
        with psycopg.connect(settings.postgres_dsn) as conn:
            for context in contexts:
                conn.execute(sql.format(prefix=f"{context}."))
        return
    for context in contexts:
        with sqlite3.connect(Path(settings.data_dir) / f"{context}.db", timeout=30) as conn:
            conn.execute(sql.format(prefix=""))


async def redeliver(settings: Settings, contexts: tuple[str, ...]) -> None:
    """Every event the history published goes out again: what a relay does when it crashed after
    publishing and before marking. The relays take them within a poll."""
    await asyncio.to_thread(_unpublish, settings, contexts)
