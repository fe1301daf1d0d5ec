"""The saga log: runs and steps, written before and after every action (units of work)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from common.db.base import Tx

RUNNING, COMPENSATING = "RUNNING", "COMPENSATING"
COMPLETED, COMPENSATED, FAILED_NEEDS_OPERATOR = "COMPLETED", "COMPENSATED", "FAILED_NEEDS_OPERATOR"
# Step states
PENDING, DONE, FAILED, UNDONE = "PENDING", "DONE", "FAILED", "COMPENSATED"


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
    return datetime.now(timezone.utc).isoformat()


async def create_run(tx: Tx, saga_id: str, saga_type: str, payload: dict[str, str]) -> None:
    """Records a new saga; a second start of the same saga id changes nothing."""
    await tx.execute(
        "INSERT INTO saga_runs (saga_id, saga_type, status, payload, error, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, '', ?, ?) ON CONFLICT (saga_id) DO NOTHING",
        saga_id, saga_type, RUNNING, json.dumps(payload, sort_keys=True), _now(), _now(),
    )  # fmt: skip


async def load(tx: Tx, saga_id: str) -> SagaRecord | None:
    run = await tx.fetchone("SELECT saga_id, saga_type, status, payload, error FROM saga_runs WHERE saga_id = ?", saga_id)
    if run is None:
        return None
    rows = await tx.fetchall(
        "SELECT step_index, name, state, attempts, result, last_error FROM saga_steps WHERE saga_id = ?", saga_id
    )
    steps = {r["step_index"]: StepRecord(r["name"], r["state"], r["attempts"], json.loads(r["result"]), r["last_error"]) for r in rows}
    return SagaRecord(run["saga_id"], run["saga_type"], run["status"], json.loads(run["payload"]), run["error"], steps)


async def unfinished(tx: Tx) -> list[str]:
    rows = await tx.fetchall("SELECT saga_id FROM saga_runs WHERE status IN (?, ?) ORDER BY created_at", RUNNING, COMPENSATING)
    return [r["saga_id"] for r in rows]


async def write_step(tx: Tx, saga_id: str, index: int, step: StepRecord) -> None:
    await tx.execute(
        "INSERT INTO saga_steps (saga_id, step_index, name, state, attempts, result, last_error) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (saga_id, step_index) DO UPDATE SET state = excluded.state, attempts = excluded.attempts,"
        " result = excluded.result, last_error = excluded.last_error",
        saga_id, index, step.name, step.state, step.attempts, json.dumps(step.result, sort_keys=True), step.last_error[:500],
    )  # fmt: skip


async def set_status(tx: Tx, saga_id: str, status: str, error: str = "") -> None:
    await tx.execute("UPDATE saga_runs SET status = ?, error = ?, updated_at = ? WHERE saga_id = ?", status, error[:500], _now(), saga_id)
