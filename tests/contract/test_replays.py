"""Every state-changing RPC replays: the same principal's same request_id and body answers the
same (the same code, and the same resource or the same refusal) after a success, a refusal and a
timeout.

The RPCs are found by server reflection: every RPC whose request carries a request_id (at its top
or in its items, as PostCharges' orders) changes state under that key. Each needs a builder in
tests/contract/replay_requests.py (those moving money: replay_money.py), or this test fails naming it.
Three scenarios for each:

(a) after a success, the same request again;
(b) after a refusal decided on the state it met (funds short, a KYC in review, a loan not yet
    approved...), the state is changed so that an identical new request would succeed (funds
    deposited, the KYC cleared, the loan approved), and the same request again must still answer
    the first refusal; a twin with a new request_id then succeeds (the change was real). Where no
    state can make the request succeed (a resolved hold, a taken username), the replay still
    answers as the first;
(c) after a timeout: sent with deadlines of 1, 5 and 20 ms (they may be cut before, while or after
    the server works), then without until it answers, then once more: every answer that is not
    DEADLINE_EXCEEDED is the same; and it is OK, ending as the same request does with no deadline
    (where the answer says what was done: a loan DISBURSED, a repayment POSTED, a run COMPLETED).

An answer is its code and, for OK, the resource's primary id (a transfer_id, a loan_id...); for
an error, its ErrorInfo reason and the fields its BadRequest names. The RPCs that change state
without a request_id are listed in KEYLESS with the reason they are not replayed; the replays known
to answer differently, in KNOWN with their cause."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc import aio

from common.grpc.status import rich_status, unpack_detail
from mesh.embedded import RunningBank
from tests.contract.replay_requests import CASES
from tests.contract.replay_world import Case, ReplayWorld, Sent, build_world
from tests.rpc_catalog import Rpc, served_rpcs

# RPCs that change state without a request_id, and why they are not replayed.
KEYLESS = {
    "IssueToken": "a new token for every login, by contract; the state it changes is the login throttle's counters",
    "SubmitPayment": "VelocityPay simulates another bank's network (a test double, not ours); idempotent by payment_id",
    "SetFaults": "the VelocityPay simulator's test control",
}
# Replays known to answer differently, each with its cause and where its fix belongs: the test
# fails when one of them answers the same (then remove its line).
KNOWN: dict[tuple[str, str], str] = {}
CUT = (0.001, 0.005, 0.02)  # deadlines in seconds
PATIENT = 30.0
DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED.name


@dataclass(frozen=True)
class Answer:
    code: str
    what: str  # OK: the resource; an error: its reason
    outcome: str = field(default="", compare=False)  # OK: what it says was done (Case.outcome)

    def __str__(self) -> str:
        return f"{self.code} {self.what} {self.outcome}".strip()


@dataclass(frozen=True)
class Row:
    rpc: str
    scenario: str
    verdict: str  # "same", "DIFFERENT" or "SETUP" (the world did not give the scenario)
    story: str


def keyed(rpc: Rpc) -> bool:
    """Whether the request carries a request_id: at its top, or in its items."""
    fields = rpc.descriptor.fields
    nested = [f.message_type for f in fields if f.message_type is not None]
    return any(f.name == "request_id" for f in fields) or any(f.name == "request_id" for m in nested for f in m.fields)


@pytest.fixture
async def world(bank: RunningBank) -> AsyncIterator[ReplayWorld]:
    async with aio.insecure_channel(bank.target) as channel:
        yield await build_world(bank, channel)


async def test_every_state_changing_rpc_answers_a_replay_as_it_answered_the_request(world: ReplayWorld) -> None:
    rpcs = await asyncio.to_thread(served_rpcs, world.bank.target)
    names = {rpc.name for rpc in rpcs}
    assert set(KEYLESS) <= names, f"KEYLESS names RPCs nobody serves: {sorted(set(KEYLESS) - names)}"
    selected = sorted((rpc for rpc in rpcs if keyed(rpc)), key=lambda rpc: rpc.path)
    missing = [rpc.path for rpc in selected if rpc.name not in CASES]
    assert not missing, (
        f"state-changing RPCs with no request in tests/contract/replay_requests.py (or replay_money.py): {missing}"
    )
    assert not set(CASES) - {rpc.name for rpc in selected}, "CASES names RPCs that are not served or take no request_id"
    rows = []
    for rpc in selected:
        rows += await Replays(world, rpc, CASES[rpc.name]).run()
    table = "\n".join(f"{r.rpc:30} {r.scenario:28} {r.verdict:9} {r.story}" for r in rows)
    print(table)
    wrong = [r for r in rows if r.verdict == "SETUP" or (r.verdict != "same" and (r.rpc, r.scenario) not in KNOWN)]
    assert not wrong, "\n" + "\n".join(f"{r.rpc} {r.scenario}: {r.verdict}: {r.story}" for r in wrong)
    still = {(r.rpc, r.scenario) for r in rows if r.verdict == "DIFFERENT"}
    assert set(KNOWN) <= still, f"these replay as they should now: remove them from KNOWN: {sorted(set(KNOWN) - still)}"


class Replays:
    """The three scenarios of one RPC."""

    def __init__(self, world: ReplayWorld, rpc: Rpc, case: Case) -> None:
        self._world = world
        self._rpc = rpc
        self._case = case
        self._done = ""  # the outcome of the request that succeeded with no deadline

    async def run(self) -> list[Row]:
        rows = [await self._after_success()]
        for n, refuse in enumerate(self._case.refusals, 1):
            rows.append(await self._after_refusal(n, refuse))
        if not self._case.refusals:
            rows.append(Row(self._rpc.name, "after a refusal", "same", f"none to arrange: {self._case.no_refusal}"))
        rows.append(await self._after_timeout())
        return rows

    def _row(self, scenario: str, answers: list[Answer], note: str = "") -> Row:
        seen = [str(a) for a in answers]
        verdict = "same" if len({a for a in answers if a.code != DEADLINE}) == 1 else "DIFFERENT"
        return Row(self._rpc.name, scenario, verdict, " | ".join(seen) + (f" ({note})" if note else ""))

    async def _after_success(self) -> Row:
        sent = await self._case.success(self._world, f"{self._rpc.name}-a".lower())
        first = await self.send(sent)
        if first.code != "OK":
            return Row(self._rpc.name, "after a success", "SETUP", f"the request meant to succeed answered {first}")
        self._done = first.outcome
        return self._row("after a success", [first, await self.send(sent)])

    async def _after_refusal(self, n: int, refuse: Any) -> Row:
        refused = await refuse(self._world, f"{self._rpc.name}-b{n}".lower())
        scenario = f"after {refused.reason}"
        first = await self.send(refused.sent)
        if refused.reason not in (first.code, *first.what.split(":")):
            return Row(self._rpc.name, scenario, "SETUP", f"meant to be refused with {refused.reason}, answered {first}")
        if refused.allow is None:
            return self._row(scenario, [first, await self.send(refused.sent)], f"final: {refused.final}")
        await refused.allow()
        row = self._row(scenario, [first, await self.send(refused.sent)], "after the state allowed it")
        if row.verdict != "same":
            return row
        twin = await self.send(Sent(refused.sent.who, _twin(refused.sent.request)))
        if twin.code != "OK" or refused.reason in twin.what.split(":"):
            return Row(self._rpc.name, scenario, "SETUP", f"{row.story}; yet a new request_id answers {twin}")
        return row

    async def _after_timeout(self) -> Row:
        sent = await self._case.success(self._world, f"{self._rpc.name}-c".lower())
        answers = [await self.send(sent, cut) for cut in CUT]
        while answers[-1].code == DEADLINE and len(answers) < len(CUT) + 3:
            answers.append(await self.send(sent, PATIENT))
        answers.append(await self.send(sent, PATIENT))
        row = self._row("after a timeout", answers)
        settled = answers[-1]
        if row.verdict == "same" and (settled.code, settled.outcome) != ("OK", self._done):
            return Row(row.rpc, row.scenario, "DIFFERENT", f"{row.story}; with no deadline it ends OK {self._done}".strip())
        return row

    async def send(self, sent: Sent, deadline: float = PATIENT) -> Answer:
        """The answer to `sent`, as its principal; a user whose tokens the request revoked (a
        change of their password) logs in again, as a client would, and sends it again."""
        answer = await self._send(sent, deadline)
        if answer.code == grpc.StatusCode.UNAUTHENTICATED.name and not sent.who.context:
            sent.who.token = ""
            answer = await self._send(sent, deadline)
        return answer

    async def _send(self, sent: Sent, deadline: float) -> Answer:
        rpc, channel = self._rpc, self._world.channel
        metadata = await self._world.metadata(sent.who)
        payload = sent.request.SerializeToString()
        try:
            if rpc.server_streaming:
                stream = channel.unary_stream(rpc.path, request_serializer=None, response_deserializer=rpc.response.FromString)
                response: Any = [r async for r in stream(payload, metadata=metadata, timeout=deadline)]
            else:
                unary = channel.unary_unary(rpc.path, request_serializer=None, response_deserializer=rpc.response.FromString)
                response = await unary(payload, metadata=metadata, timeout=deadline)
        except aio.AioRpcError as error:
            return _refusal(error)
        outcome = self._case.outcome(response) if self._case.outcome else ""
        return Answer("OK", self._case.resource(response), outcome)


def _refusal(error: aio.AioRpcError) -> Answer:
    """An error's code and reason: its ErrorInfo reason, and the fields its BadRequest names."""
    status = rich_status(error)
    if status is None:
        return Answer(error.code().name, "")
    info = unpack_detail(status, error_details_pb2.ErrorInfo)
    bad = unpack_detail(status, error_details_pb2.BadRequest)
    reason = [info.reason] if isinstance(info, error_details_pb2.ErrorInfo) else []
    fields = sorted(v.field for v in bad.field_violations) if isinstance(bad, error_details_pb2.BadRequest) else []
    return Answer(error.code().name, ":".join(reason + fields))


def _twin(request: Message) -> Message:
    """The same request under a new request_id (each of its items' too)."""
    twin: Any = type(request)()
    twin.CopyFrom(request)
    if "request_id" in type(request).DESCRIPTOR.fields_by_name:
        twin.request_id = f"{twin.request_id}-twin"
    for item in [*getattr(twin, "charges", []), *getattr(twin, "holds", [])]:  # PostCharges, PlaceHolds
        item.request_id = f"{item.request_id}-twin"
    return twin
