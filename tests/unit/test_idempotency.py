"""Idempotency keys on a real SQLite file: a replay answers the first resource; the same
request_id with other content, or for another operation, is refused; a key is the principal's;
a key closed by resource_or_void never makes anything; claims are recorded in the audit trail."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from common.db.base import Tx
from common.db.idempotency import claim, claim_new, once, refusal_of, refusal_text, refuse, replayed_resource, resource_or_void
from common.db.sqlite import SqliteDatabase
from common.errors import AlreadyExists, FieldRefused, FieldViolation, PreconditionFailed
from common.idempotency import IdempotencyKey
from og.audit.v1.audit_pb2 import ChangeRecorded

R = TypeVar("R")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(tmp_path / "keys.db")
    await database.open([])
    yield database
    await database.close()


def key(
    request_id: str = "req-1", operation: str = "Transfer", fingerprint: str = "body-a", scope: str = "usr_ada"
) -> IdempotencyKey:
    return IdempotencyKey(request_id, operation, fingerprint, scope)


async def write(db: SqliteDatabase, unit: Callable[[Tx], Awaitable[R]]) -> R:
    async def run(tx: Tx) -> R:
        return await unit(tx)

    return await db.write(run)


async def recorded(db: SqliteDatabase) -> list[tuple[str, str, str]]:
    """The audit records in the outbox: (operation, resource, request id)."""

    async def rows(tx: Tx) -> list[tuple[str, str, str]]:
        found = await tx.fetchall("SELECT payload FROM outbox ORDER BY seq")
        events = [ChangeRecorded.FromString(bytes(r["payload"])) for r in found]
        return [(e.operation, e.resource, e.request_id) for e in events]

    return await db.read(rows)


async def test_a_new_claim_goes_on_and_its_replay_answers_the_first_resource(db: SqliteDatabase) -> None:
    assert await write(db, lambda tx: claim(tx, key(), "trf_1")) is None
    assert await write(db, lambda tx: claim(tx, key(), "trf_2")) == "trf_1"
    assert await db.read(lambda tx: replayed_resource(tx, key())) == "trf_1"
    assert await recorded(db) == [("Transfer", "trf_1", "req-1")]  # the claim once, not its replay


async def test_a_key_unknown_is_no_replay(db: SqliteDatabase) -> None:
    assert await db.read(lambda tx: replayed_resource(tx, key())) is None


@pytest.mark.parametrize(
    "other",
    [key(fingerprint="body-b"), key(operation="Withdraw"), key(operation="Withdraw", fingerprint="body-b")],
    ids=["other content", "other operation", "both"],
)
async def test_the_same_request_id_for_another_request_is_refused(db: SqliteDatabase, other: IdempotencyKey) -> None:
    """Another operation with the very same body is another request: a Withdraw must not be
    answered with the Transfer its request_id made."""
    await write(db, lambda tx: claim(tx, key(), "trf_1"))
    for attempt in (lambda tx: claim(tx, other, "x"), lambda tx: replayed_resource(tx, other)):
        with pytest.raises(AlreadyExists) as refused:
            await write(db, attempt)
        assert refused.value.reason == "IDEMPOTENCY_KEY_REUSED"
        assert refused.value.metadata == {"request_id": "req-1", "operation": other.operation}


async def test_a_key_is_the_principals_that_used_it(db: SqliteDatabase) -> None:
    await write(db, lambda tx: claim(tx, key(), "trf_ada"))
    assert await write(db, lambda tx: claim(tx, key(scope="usr_bob"), "trf_bob")) is None
    assert await db.read(lambda tx: replayed_resource(tx, key(scope="usr_bob"))) == "trf_bob"
    assert await db.read(lambda tx: replayed_resource(tx, key())) == "trf_ada"


async def test_a_refusal_kept_on_a_key_answers_it_for_good_and_only_for_its_principal(db: SqliteDatabase) -> None:
    assert await write(db, lambda tx: claim(tx, key(), "trf_ada", record=False)) is None
    assert await recorded(db) == []
    short = PreconditionFailed("INSUFFICIENT_FUNDS", "short", {"available": "1.00"})
    await write(db, lambda tx: refuse(tx, key(), short))
    with pytest.raises(PreconditionFailed) as again:
        await db.read(lambda tx: replayed_resource(tx, key()))
    assert (again.value.reason, again.value.metadata) == ("INSUFFICIENT_FUNDS", {"available": "1.00"})
    assert await write(db, lambda tx: claim(tx, key(scope="usr_bob"), "trf_bob")) is None, "Bob's key is his own"


async def test_claim_new_claims_and_records_each_key_under_its_operation(db: SqliteDatabase) -> None:
    await write(db, lambda tx: claim_new(tx, []))
    claims = [(key("a", "Charge"), "chg_a"), (key("b", "Fee"), "chg_b"), (key("c", "Charge"), "chg_c")]
    await write(db, lambda tx: claim_new(tx, claims))
    for k, resource in claims:
        assert await db.read(lambda tx, k=k: replayed_resource(tx, k)) == resource
    assert sorted(await recorded(db)) == [("Charge", "chg_a", "a"), ("Charge", "chg_c", "c"), ("Fee", "chg_b", "b")]


async def test_resource_or_void_answers_what_the_operation_made(db: SqliteDatabase) -> None:
    await write(db, lambda tx: claim(tx, key(), "hld_1"))
    assert await write(db, lambda tx: resource_or_void(tx, "usr_ada", "req-1", "Transfer")) == "hld_1"
    # the key made something else: nothing of this operation's, and the key stays as it was
    assert await write(db, lambda tx: resource_or_void(tx, "usr_ada", "req-1", "PlaceHold")) is None
    assert await db.read(lambda tx: replayed_resource(tx, key())) == "hld_1"


async def test_a_key_voided_never_makes_anything(db: SqliteDatabase) -> None:
    assert await write(db, lambda tx: resource_or_void(tx, "usr_ada", "req-1", "Transfer")) is None
    assert await write(db, lambda tx: resource_or_void(tx, "usr_ada", "req-1", "Transfer")) is None
    for attempt in (lambda tx: claim(tx, key(), "trf_late"), lambda tx: replayed_resource(tx, key())):
        with pytest.raises(PreconditionFailed) as refused:
            await write(db, attempt)
        assert refused.value.reason == "REQUEST_VOIDED"
    with pytest.raises(AlreadyExists):  # voided for Transfer; another operation's request reuses it
        await write(db, lambda tx: claim(tx, key(operation="Withdraw"), "trf_other"))
    assert await write(db, lambda tx: claim(tx, key(scope="usr_bob"), "trf_bob")) is None  # only Ada's key


async def _things(tx: Tx) -> list[str]:
    await tx.execute("CREATE TABLE IF NOT EXISTS things (thing_id TEXT PRIMARY KEY)")
    return [str(r["thing_id"]) for r in await tx.fetchall("SELECT thing_id FROM things ORDER BY thing_id")]


async def test_once_makes_once_records_once_and_keeps_a_refusal_with_nothing_it_wrote(db: SqliteDatabase) -> None:
    """`once` on a new key makes the resource and records the change once; a refusal that `make`
    raises undoes what it wrote (its savepoint), records nothing, and is the key's answer for
    good, a field refusal included, as it was first answered."""

    def unit(k: IdempotencyKey, thing: str, refusal: Exception | None) -> Callable[[Tx], Awaitable[str]]:
        async def run(tx: Tx) -> str:
            async def make() -> str:
                await _things(tx)
                await tx.execute("INSERT INTO things (thing_id) VALUES (?)", thing)
                if refusal is not None:
                    raise refusal
                return thing

            async def replay(done: str) -> str:
                return f"replayed {done}"

            return await once(tx, k, thing, make, replay)

        return run

    assert await write(db, unit(key("made"), "thg_1", None)) == "thg_1"
    assert await write(db, unit(key("made"), "thg_1", None)) == "replayed thg_1"
    assert await recorded(db) == [("Transfer", "thg_1", "made")], "the change once, when made; not at the claim"
    wrong = FieldRefused([FieldViolation("current_password", "does not match", "MISMATCH")])
    for request_id, refusal in (
        ("short", PreconditionFailed("INSUFFICIENT_FUNDS", "short", {"available": "1.00"})),
        ("field", wrong),
    ):
        with pytest.raises(type(refusal)):
            await write(db, unit(key(request_id), f"thg_{request_id}", refusal))
        with pytest.raises(type(refusal)) as again:  # later, when `make` would succeed: still the refusal
            await write(db, unit(key(request_id), f"thg_{request_id}", None))
        assert str(again.value) == str(refusal)
        assert await write(db, lambda tx, r=request_id: resource_or_void(tx, "usr_ada", r, "Transfer")) is None
    assert await write(db, _things) == ["thg_1"], "nothing a refused make wrote"
    assert len(await recorded(db)) == 1
    kept = refusal_of(refusal_text(wrong))
    assert isinstance(kept, FieldRefused) and kept.violations == wrong.violations
