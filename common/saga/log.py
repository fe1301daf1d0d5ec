"""The saga log: runs and steps, written before and after every action (units of work)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from common.db.base import Tx

RUNNING, COMPENSATING = "RUNNING", "COMPENSATING"
COMPLETED, COMPENSATED, FAILED_NEEDS_OPERATOR = "COMPLETED", "COMPENSATED", "FAILED_NEEDS_OPERATOR"
# Step states. REFUSED: the step was refused for good and did nothing, so there is nothing to undo
# (FAILED: it kept failing for passing reasons, and may have acted).
PENDING, DONE, FAILED, REFUSED, UNDONE = "PENDING", "DONE", "FAILED", "REFUSED", "COMPENSATED"


TERMINAL = (COMPLETED, COMPENSATED, FAILED_NEEDS_OPERATOR)


class LeaseLost(Exception):
    """Another process took the saga over (this one was too slow to renew): stop driving it."""


@dataclass(frozen=True)
class Lease:
    """Who drives, and for how long a write keeps the right to (renewed by every write)."""

    owner: str
    seconds: float


@dataclass
class StepRecord:
    name: str
    state: str = ""
    attempts: int = 0
    result: dict[str, str] = field(default_factory=dict)
    last_error: str = ""


@dataclass
class SagaRecord:
    saga_id: str
    saga_type: str
    status: str
    payload: dict[str, str]
    error: str
    steps: dict[int, StepRecord]


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def create_run(tx: Tx, saga_id: str, saga_type: str, payload: dict[str, str]) -> None:
    """Records a new saga; a second start of the same saga id changes nothing."""
    await tx.execute(
        "INSERT INTO saga_runs (saga_id, saga_type, status, payload, error, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, '', ?, ?) ON CONFLICT (saga_id) DO NOTHING",
        saga_id,
        saga_type,
        RUNNING,
        json.dumps(payload, sort_keys=True),
        _now(),
        _now(),
    )


async def load(tx: Tx, saga_id: str) -> SagaRecord | None:
    run = await tx.fetchone("SELECT saga_id, saga_type, status, payload, error FROM saga_runs WHERE saga_id = ?", saga_id)
    if run is None:
        return None
    rows = await tx.fetchall(
        "SELECT step_index, name, state, attempts, result, last_error FROM saga_steps WHERE saga_id = ?", saga_id
    )
    steps = {
        r["step_index"]: StepRecord(r["name"], r["state"], r["attempts"], json.loads(r["result"]), r["last_error"]) for r in rows
    }
    return SagaRecord(run["saga_id"], run["saga_type"], run["status"], json.loads(run["payload"]), run["error"], steps)


async def unfinished(tx: Tx, owner: str, now: float) -> list[str]:
    """Unfinished sagas this owner may drive: its own, nobody's, or ones whose lease ran out."""
    rows = await tx.fetchall(
        "SELECT saga_id FROM saga_runs WHERE status IN (?, ?) AND (owner = ? OR owner = '' OR lease_until < ?) ORDER BY created_at",
        RUNNING,
        COMPENSATING,
        owner,
        now,
    )
    return [r["saga_id"] for r in rows]


async def claim(tx: Tx, saga_id: str, lease: Lease, now: float) -> bool:
    """Takes (or renews) the right to drive an unfinished saga; False while another holds it."""
    moved = await tx.execute(
        "UPDATE saga_runs SET owner = ?, lease_until = ? WHERE saga_id = ? AND status IN (?, ?)"
        " AND (owner = ? OR owner = '' OR lease_until < ?)",
        lease.owner,
        now + lease.seconds,
        saga_id,
        RUNNING,
        COMPENSATING,
        lease.owner,
        now,
    )
    return moved == 1


async def _fence(tx: Tx, saga_id: str, lease: Lease, now: float) -> None:
    """Every write renews the lease, and is refused once another owner holds it."""
    moved = await tx.execute(
        "UPDATE saga_runs SET lease_until = ? WHERE saga_id = ? AND owner = ?", now + lease.seconds, saga_id, lease.owner
    )
    if moved != 1:
        raise LeaseLost(saga_id)


async def write_step(tx: Tx, saga_id: str, index: int, step: StepRecord, lease: Lease, now: float) -> None:
    await _fence(tx, saga_id, lease, now)
    await tx.execute(
        "INSERT INTO saga_steps (saga_id, step_index, name, state, attempts, result, last_error) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (saga_id, step_index) DO UPDATE SET state = excluded.state, attempts = excluded.attempts,"
        " result = excluded.result, last_error = excluded.last_error",
        saga_id,
        index,
        step.name,
        step.state,
        step.attempts,
        json.dumps(step.result, sort_keys=True),
        step.last_error[:500],
    )


async def set_status(tx: Tx, saga_id: str, status: str, error: str, lease: Lease, now: float) -> None:
    await _fence(tx, saga_id, lease, now)
    owner = "" if status in TERMINAL else lease.owner  # a finished saga belongs to nobody
    await tx.execute(
        "UPDATE saga_runs SET status = ?, error = ?, updated_at = ?, owner = ? WHERE saga_id = ?",
        status,
        error[:500],
        _now(),
        owner,
        saga_id,
    )
