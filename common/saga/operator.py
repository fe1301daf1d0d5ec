"""An operator's hand on the saga log: list the runs, and send a run that stopped
FAILED_NEEDS_OPERATOR forward again from its failed step (retry) or backward through its
compensations (compensate).

Both are one conditional change of the run's status, decided on the run's locked row in the unit
of work of the context that owns the log (with the writes of its own that go with it): of two
operators acting at once exactly one finds the run FAILED_NEEDS_OPERATOR, the other is refused.
Nothing else changes: the run is left RUNNING or COMPENSATING with nobody's lease, and its driver
is the runner as always (`SagaRunner.run`, or the replica that looks for unfinished runs if this
process dies first).

A retry is refused once a step was compensated: the steps act with deterministic keys, so a step
done again after its undo would replay its first answer and do nothing; such a run can only be
compensated. An action may need two admins (`common.four_eyes`, the owner says for which run
and amount): the first approval is kept on the row (`pending_action`, `first_approver`) and the
run waits.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from common.db.base import Row, Tx, row_lock
from common.db.keyset import Page, keyset_page
from common.errors import Aborted, NotFound, PreconditionFailed
from common.filtering import Filter, FilterField, Kind
from common.four_eyes import Approval
from common.saga.log import (
    COMPENSATED,
    COMPENSATING,
    COMPLETED,
    DONE,
    FAILED_NEEDS_OPERATOR,
    RUNNING,
    UNDONE,
    SagaRecord,
    StepRecord,
    load,
)

RETRY, COMPENSATE = "RETRY", "COMPENSATE"
STATUSES = (RUNNING, COMPENSATING, COMPLETED, COMPENSATED, FAILED_NEEDS_OPERATOR)
# What an operator's list of runs may be filtered on (common.filtering), as the contracts name it.
FILTER_FIELDS = (
    FilterField("state", "status", Kind.ENUM, {s: s for s in STATUSES}),
    FilterField("saga_type", "saga_type", Kind.TEXT),
    FilterField("create_time", "created_at", Kind.TIMESTAMP),
    FilterField("update_time", "updated_at", Kind.TIMESTAMP),
)
_COLUMNS = "saga_id, saga_type, status, payload, error, created_at, updated_at, pending_action, first_approver"


class Outcome(Enum):
    STARTED = "STARTED"  # the run moves again: its driver takes it to an end
    WAITING = "WAITING"  # an approval is kept; the run waits for another admin


@dataclass(frozen=True)
class SagaRun:
    """A run as an operator sees it: its log, its times, and an approval waiting for a second admin."""

    record: SagaRecord
    created_at: datetime
    updated_at: datetime
    pending_action: str = ""
    first_approver: str = ""


# Whether an approval of `action` on the run needs another admin: (run, first approver of that
# action kept on the row, or "") -> what this approval does. The owner of the saga knows its amount.
FourEyes = Callable[[SagaRecord, str], Approval]


def _run(row: Row, steps: dict[int, StepRecord]) -> SagaRun:
    record = SagaRecord(row["saga_id"], row["saga_type"], row["status"], json.loads(row["payload"]), row["error"], steps)
    created, updated = datetime.fromisoformat(row["created_at"]), datetime.fromisoformat(row["updated_at"])
    return SagaRun(record, created, updated, row["pending_action"], row["first_approver"])


class SagaRuns:
    """The saga log of one transaction, as operators read and change it (decides nothing)."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def page(self, where: Filter, after: str, limit: int) -> Page[SagaRun, str]:
        """Runs matching `where`, by saga id, after `after`; their steps read in one more query."""
        condition, params = where.sql()
        select = f"SELECT {_COLUMNS} FROM saga_runs"
        page: Page[Row, str] = await keyset_page(self._tx, select, condition, params, after, limit, lambda r: r, key="saga_id")
        steps = await self._steps([r["saga_id"] for r in page.items])
        return Page([_run(r, steps.get(r["saga_id"], {})) for r in page.items], page.next_after)

    async def _steps(self, saga_ids: list[str]) -> dict[str, dict[int, StepRecord]]:
        if not saga_ids:
            return {}
        rows = await self._tx.fetchall(
            "SELECT saga_id, step_index, name, state, attempts, result, last_error FROM saga_steps"
            f" WHERE saga_id IN ({', '.join('?' for _ in saga_ids)})",
            *saga_ids,
        )
        found: dict[str, dict[int, StepRecord]] = {}
        for r in rows:
            step = StepRecord(r["name"], r["state"], r["attempts"], json.loads(r["result"]), r["last_error"])
            found.setdefault(r["saga_id"], {})[r["step_index"]] = step
        return found

    async def get(self, saga_id: str, *, lock: bool = False) -> SagaRun | None:
        """One run; `lock`: locked until the unit ends (SQLite: the unit holds the write lock)."""
        locking = row_lock(self._tx, "UPDATE") if lock else ""
        row = await self._tx.fetchone(f"SELECT {_COLUMNS} FROM saga_runs WHERE saga_id = ?{locking}", saga_id)
        if row is None:
            return None
        record = await load(self._tx, saga_id)
        return _run(row, record.steps if record else {})

    async def restart(self, saga_id: str, status: str, *, reset_attempts: bool) -> bool:
        """FAILED_NEEDS_OPERATOR -> `status`, leased to nobody (a conditional write: False when the
        run was not FAILED_NEEDS_OPERATOR); the steps not done start their attempts again."""
        moved = await self._tx.execute(
            "UPDATE saga_runs SET status = ?, owner = '', lease_until = 0, pending_action = '', first_approver = '',"
            " updated_at = ? WHERE saga_id = ? AND status = ?",
            status,
            datetime.now(UTC).isoformat(),
            saga_id,
            FAILED_NEEDS_OPERATOR,
        )
        if moved == 1 and reset_attempts:
            await self._tx.execute("UPDATE saga_steps SET attempts = 0 WHERE saga_id = ? AND state <> ?", saga_id, DONE)
        return moved == 1

    async def await_second(self, saga_id: str, action: str, approver: str) -> None:
        """Keeps the first admin's approval of `action` on the run."""
        await self._tx.execute(
            "UPDATE saga_runs SET pending_action = ?, first_approver = ? WHERE saga_id = ?", action, approver, saga_id
        )


async def act(runs: SagaRuns, saga_id: str, action: str, approver: str, four_eyes: FourEyes | None = None) -> Outcome:
    """`approver`'s RETRY or COMPENSATE of a run, decided on its locked row (see the module doc).
    NOT_FOUND for an unknown run; FAILED_PRECONDITION SAGA_NOT_FAILED for a run that is not
    FAILED_NEEDS_OPERATOR (another operator acted first, or it never stopped), and
    SAGA_PARTLY_COMPENSATED for a retry of a run some steps of which were undone."""
    run = await runs.get(saga_id, lock=True)
    if run is None:
        raise NotFound("saga", saga_id)
    status = run.record.status
    if status != FAILED_NEEDS_OPERATOR:
        raise PreconditionFailed(
            "SAGA_NOT_FAILED",
            f"saga {saga_id} is {status}: only a saga stopped {FAILED_NEEDS_OPERATOR} is retried or compensated",
            {"saga_id": saga_id, "status": status},
        )
    undone = [s.name for _, s in sorted(run.record.steps.items()) if s.state == UNDONE]
    if action == RETRY and undone:
        raise PreconditionFailed(
            "SAGA_PARTLY_COMPENSATED",
            f"saga {saga_id} already compensated {', '.join(undone)}: run again, those steps would do nothing; compensate it",
            {"saga_id": saga_id, "compensated_steps": ",".join(undone)},
        )
    first = run.first_approver if run.pending_action == action else ""
    step = four_eyes(run.record, first) if four_eyes is not None else Approval.FINAL
    if step is Approval.FIRST:
        await runs.await_second(saga_id, action, approver)
        return Outcome.WAITING
    if step is Approval.NONE:
        return Outcome.WAITING
    if not await runs.restart(saga_id, RUNNING if action == RETRY else COMPENSATING, reset_attempts=action == RETRY):
        raise Aborted("SAGA_MOVED", f"saga {saga_id} moved on under its lock", {"saga_id": saga_id})  # a bug, never a decision
    return Outcome.STARTED
