"""Dead letters as a context's database keeps them (table `dead_letters`, a framework migration):
one typed function per statement, each run inside the caller's unit of work; they decide nothing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from common.db.base import Row, Tx, aggregate
from common.events.bus import REDELIVERED_TO
from common.events.envelope import Envelope
from common.filtering import Filter
from common.ids import new_id

WAITING, REPLAYED, DROPPED = "WAITING", "REPLAYED", "DROPPED"
STATES = (WAITING, REPLAYED, DROPPED)
_COLUMNS = (
    "dead_letter_id, consumer, event_type, event_id, payload, headers, occurred_at, error, dead_at, state, acted_at,"
    " actor, reason"
)


@dataclass(frozen=True)
class DeadLetter:
    """An event `consumer` gave up on, and what an operator did about it."""

    dead_letter_id: str
    consumer: str
    envelope: Envelope
    error: str
    dead_at: datetime
    state: str
    acted_at: datetime | None = None
    actor: str = ""
    reason: str = ""

    def redelivery(self) -> Envelope:
        """The event as published, addressed to this consumer alone (the bus lets every other pass)."""
        return replace(self.envelope, headers={**self.envelope.headers, REDELIVERED_TO: self.consumer})


def _letter(row: Row) -> DeadLetter:
    envelope = Envelope(row["event_id"], row["event_type"], bytes(row["payload"]), row["occurred_at"], json.loads(row["headers"]))
    acted = row["acted_at"]
    return DeadLetter(
        row["dead_letter_id"],
        row["consumer"],
        envelope,
        row["error"],
        datetime.fromisoformat(row["dead_at"]),
        row["state"],
        datetime.fromisoformat(acted) if acted else None,
        row["actor"],
        row["reason"],
    )


async def keep(tx: Tx, consumer: str, envelopes: Sequence[Envelope], error: str, at: datetime) -> None:
    """One WAITING letter per event; an event already waiting (kept again after a crash) adds none."""
    await tx.executemany(
        f"INSERT INTO dead_letters ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, '', '') ON CONFLICT DO NOTHING",
        [
            (
                new_id("dlq"),
                consumer,
                e.event_type,
                e.event_id,
                e.payload,
                e.headers_json(),
                e.occurred_at,
                error,
                at.astimezone(UTC).isoformat(),
                WAITING,
            )
            for e in envelopes
        ],
    )


async def get(tx: Tx, dead_letter_id: str) -> DeadLetter | None:
    row = await tx.fetchone(f"SELECT {_COLUMNS} FROM dead_letters WHERE dead_letter_id = ?", dead_letter_id)
    return _letter(row) if row is not None else None


async def page(tx: Tx, where: Filter, after: str, limit: int) -> list[DeadLetter]:
    """Letters after `after` (by id: oldest first) that pass `where`, at most `limit`."""
    condition, parameters = where.sql()
    rows = await tx.fetchall(
        f"SELECT {_COLUMNS} FROM dead_letters WHERE dead_letter_id > ? AND {condition} ORDER BY dead_letter_id LIMIT ?",
        after,
        *parameters,
        limit,
    )
    return [_letter(row) for row in rows]


async def close(tx: Tx, dead_letter_id: str, state: str, at: datetime, actor: str, reason: str) -> bool:
    """WAITING -> `state`, a conditional write: True when this unit moved it (the decision)."""
    changed = await tx.execute(
        "UPDATE dead_letters SET state = ?, acted_at = ?, actor = ?, reason = ? WHERE dead_letter_id = ? AND state = ?",
        state,
        at.astimezone(UTC).isoformat(),
        actor,
        reason,
        dead_letter_id,
        WAITING,
    )
    return changed == 1


async def waiting(tx: Tx) -> dict[str, int]:
    """Letters waiting, by consumer."""
    rows = await tx.fetchall("SELECT consumer, COUNT(*) AS n FROM dead_letters WHERE state = ? GROUP BY consumer", WAITING)
    return {row["consumer"]: int(row["n"]) for row in rows}


async def holds(tx: Tx, dead_letter_id: str) -> bool:
    row = await aggregate(tx, "SELECT COUNT(*) AS n FROM dead_letters WHERE dead_letter_id = ?", dead_letter_id)
    return int(row["n"]) > 0
