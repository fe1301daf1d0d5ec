"""Inbox: a consumer records the events it handled, in the same transaction as its reaction, so a
redelivered event is recognised and changes nothing (effectively-once handling)."""

from __future__ import annotations

from common.db.base import Tx


async def first_delivery(tx: Tx, consumer: str, event_id: str) -> bool:
    """True the first time `consumer` sees `event_id` (and records it); False on redelivery."""
    inserted = await tx.execute(
        "INSERT INTO inbox (consumer, event_id) VALUES (?, ?) ON CONFLICT (consumer, event_id) DO NOTHING",
        consumer,
        event_id,
    )
    return inserted == 1
