"""Runs histories against a real bank: the principals of a history, each operation sent the way
its mode says, every answer recorded by (principal, method, request_id)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc import aio

from common.clock import Clock
from common.grpc.client import bearer_channel
from common.grpc.status import rich_status, unpack_detail
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from tests.bank_helpers import Bank, create_user, fresh_document
from tests.conftest import ADMIN_PASSWORD, document, issue_token, onboarding
from tests.rpc_catalog import Rpc
from tests.simulation.letters import dead_letters
from tests.simulation.model import REPLAY, TIME_PASSES, History, Op
from tests.simulation.requests import ONBOARDING, Made, Request, request_for

PASSWORD = "a-long-password-1"
CUSTOMERS = 4
DEADLINE = 10.0  # seconds: an answer the bank owes
WITH_DETAILS = {
    "INVALID_ARGUMENT",
    "FAILED_PRECONDITION",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "OUT_OF_RANGE",
    "RESOURCE_EXHAUSTED",
}
# Refusals at the edge, decided on the request, the caller's authority and the clock at the time
# of each call, before any state: a late replay may hear otherwise (a month over since, a role gone).
AT_THE_EDGE = {"INVALID_ARGUMENT", "PERMISSION_DENIED", "UNAUTHENTICATED", "DEADLINE_EXCEEDED", "CANCELLED"}
_tags = itertools.count(1)


@dataclass(frozen=True)
class Outcome:
    code: str
    reason: str = ""
    resource: str = ""
    detailed: bool = True  # a refusal carries google.rpc details

    def __str__(self) -> str:
        return " ".join(part for part in (self.code, self.reason, self.resource) if part)


@dataclass
class Answers:
    """Every answer, by (principal, method, request_id), in the order received."""

    by_key: dict[tuple[str, str, str], list[Outcome]] = field(default_factory=lambda: defaultdict(list))
    ops: dict[tuple[str, str, str], Op] = field(default_factory=dict)
    passwords: list[tuple[str, str, str, int]] = field(
        default_factory=list
    )  # (user, current, new, wave) of each change that succeeded

    streaming: set[tuple[str, str, str]] = field(default_factory=set)  # keys of batch runs (server-streaming calls)

    def add(self, key: tuple[str, str, str], op: Op, outcome: Outcome) -> None:
        self.by_key[key].append(outcome)
        self.ops.setdefault(key, op)


def _resource(response: Any) -> str:
    """The id of what an answer names: the `<field>_id` of each message field it holds."""
    ids = []
    for descriptor, value in response.ListFields():
        if descriptor.message_type is None:
            continue
        for item in value if descriptor.is_repeated else [value]:
            for name in (f"{descriptor.name.removesuffix('s')}_id", "transfer_id"):
                if name in item.DESCRIPTOR.fields_by_name and getattr(item, name):
                    ids.append(getattr(item, name))
                    break
    return ",".join(ids)


def _refusal(error: aio.AioRpcError) -> Outcome:
    status = rich_status(error)
    info = unpack_detail(status, error_details_pb2.ErrorInfo) if status is not None else None
    bad = unpack_detail(status, error_details_pb2.BadRequest) if status is not None else None
    reason = info.reason if isinstance(info, error_details_pb2.ErrorInfo) else ""
    if isinstance(bad, error_details_pb2.BadRequest):
        reason = reason or "fields:" + ",".join(sorted(v.field for v in bad.field_violations))
    return Outcome(error.code().name, reason, "", status is not None)


class Driver:
    """One bank, its admin, and the principals of the history being run."""

    # Dead letters are made by arming a consumer's fail point, which only a bank in this process
    # obeys; a mesh of processes gets none (its ReplayDeadLetter and DropDeadLetter are refused).
    makes_dead_letters = True

    def __init__(self, target: str, rpcs: dict[str, Rpc], clock: ShiftedClock) -> None:
        self.target, self.rpcs, self.clock = target, rpcs, clock
        self.tokens: dict[str, str] = {}
        self.logins: dict[str, tuple[str, str]] = {}  # principal -> (username, password)
        self.made = Made()
        self.answers = Answers()
        self.channel: aio.Channel = aio.insecure_channel(target)
        self.tag = ""
        self.wave = 0
        self.sent: dict[int, tuple[Request, Any]] = {}  # by operation number: its request, for a later replay

    async def close(self) -> None:
        await self.channel.close()

    # --- the world of one history --------------------------------------------------------------

    async def prepare(self) -> None:
        """Fresh principals for a history: customers with a user, a funded account and a savings
        or business account each, a relationship manager of the first, two admins who will act on
        each other."""
        self.tag = f"h{next(_tags)}"
        self.made, self.answers, self.sent = Made(today=self.clock.now().date()), Answers(), {}
        self.tokens = {"admin": await issue_token(self.target, "admin", ADMIN_PASSWORD)}
        self.logins = {"admin": ("admin", ADMIN_PASSWORD)}
        async with bearer_channel(self.target, self.tokens["admin"]) as channel:
            await self._people(Bank(channel), igrpc.IdentityServiceStub(channel))
            self.made.letters = await dead_letters(channel, self.tag) if self.makes_dead_letters else []

    async def _people(self, bank: Bank, identity: igrpc.IdentityServiceStub) -> None:
        for i in range(CUSTOMERS):
            customer = await bank.verified_customer(f"{self.tag}-{i}")
            account = (await bank.default_account(customer)).account_id
            await bank.deposit(account, "100.00", f"{self.tag}-{i}")
            # and one that earns interest or pays a monthly fee, so that the batch runs move money
            kind = (apb.ACCOUNT_TYPE_PERSONAL_SAVINGS, apb.ACCOUNT_TYPE_BUSINESS_CHECKING)[i % 2]
            earning = await bank.open(customer, f"{self.tag}-{i}-earning", kind)
            await bank.deposit(earning, "900.00", f"{self.tag}-{i}-earning")
            user = await create_user(identity, f"{self.tag}-c{i}", ipb.ROLE_CUSTOMER, PASSWORD, customer)
            self.made.customers.append(customer)
            self.made.users.append(user)
            self.made.accounts += [(account, i), (earning, i)]
            self.made.passwords[i] = PASSWORD
            self.logins[f"customer:{i}"] = (f"{self.tag}-c{i}", PASSWORD)
        manager = await create_user(identity, f"{self.tag}-rm", ipb.ROLE_RELATIONSHIP_MANAGER, PASSWORD)
        assign = cpb.AssignRelationshipManagerRequest(
            request_id=f"{self.tag}-rm", customer_id=self.made.customers[0], relationship_manager_id=manager
        )
        await bank.customers.AssignRelationshipManager(assign)
        self.logins["manager"] = (f"{self.tag}-rm", PASSWORD)
        for i in range(2):
            self.made.war.append(await create_user(identity, f"{self.tag}-w{i}", ipb.ROLE_ADMIN, PASSWORD))
            self.logins[f"war:{i}"] = (f"{self.tag}-w{i}", PASSWORD)

    def _metadata(self, sender: str) -> tuple[tuple[str, str], ...]:
        token = self.tokens.get(sender)
        return (("authorization", f"Bearer {token}"),) if token else ()

    async def _login(self, sender: str) -> None:
        """A principal's token, again after it was revoked (a password change, a disable)."""
        if sender not in self.logins:
            return
        username, password = self.logins[sender]
        with contextlib.suppress(aio.AioRpcError):
            self.tokens[sender] = await issue_token(self.target, username, password)

    # --- running ------------------------------------------------------------------------------

    async def run(self, history: History) -> None:
        for self.wave, wave in enumerate(history):
            await asyncio.gather(*(self._run_op(op) for op in wave))

    async def _run_op(self, op: Op) -> None:
        if op.kind == TIME_PASSES:
            self.clock.shift(timedelta(days=int(str(op.args["days"]))))
            self.made.today = self.clock.now().date()
            return
        if op.kind == REPLAY:
            await self._replay(op)
            return
        request = await self._onboarding(op) if op.kind == ONBOARDING else request_for(op, self.made)
        if request.sender not in self.tokens and request.sender != "stranger":
            await self._login(request.sender)
        rid = f"{self.tag}-{op.n}"
        key = (request.sender, request.method, rid)
        message_class = self.rpcs[request.method].request
        keyed = "request_id" in message_class.DESCRIPTOR.fields_by_name
        message = json_format.ParseDict({"request_id": rid, **request.body} if keyed else request.body, message_class())
        if keyed:
            self.sent[op.n] = (request, message)
        if self.rpcs[request.method].server_streaming:
            self.answers.streaming.add(key)
        outcomes = await self._send_as_mode(op, request, message)
        for outcome in outcomes:
            self.answers.add(key, op, outcome)
        if any(o.code == "UNAUTHENTICATED" for o in outcomes):
            self.tokens.pop(request.sender, None)

    async def _replay(self, op: Op) -> None:
        """The very request of operation `of` again, by the same principal, now that the state it
        was decided on may have moved: its answer must be the one it had."""
        of = int(str(op.args["of"]))
        if of not in self.sent:  # not keyed, or shrunk away
            return
        request, message = self.sent[of]
        key = (request.sender, request.method, message.request_id)
        if all(o.code in AT_THE_EDGE for o in self.answers.by_key[key]):
            return  # it never reached the state it would be decided on
        if request.sender not in self.tokens and request.sender != "stranger":
            await self._login(request.sender)
        outcome = await self._call(request.method, message, self._metadata(request.sender), DEADLINE)
        if outcome.code not in AT_THE_EDGE:
            self.answers.add(key, op, outcome)
        if outcome.code == "UNAUTHENTICATED":
            self.tokens.pop(request.sender, None)

    async def _onboarding(self, op: Op) -> Request:
        body = json_format.MessageToDict(onboarding("x", document=document(fresh_document())), preserving_proto_field_name=True)
        body.pop("request_id")
        return Request(ONBOARDING, "admin" if op.actor != "stranger" else "stranger", body)

    async def _send_as_mode(self, op: Op, request: Request, message: Any) -> list[Outcome]:
        send = self._sender(op, request)
        if op.mode == "race":
            return list(await asyncio.gather(*(send(message, DEADLINE) for _ in range(op.copies))))
        if op.mode == "funds":
            deposit = self._deposit_soon(request.debits, op)
            raced = await asyncio.gather(*(send(message, DEADLINE) for _ in range(op.copies)), deposit)
            return [o for o in raced if o is not None]
        if op.mode == "deadline":
            first = await send(message, op.deadline_ms / 1000)
            return [first, await send(message, DEADLINE)]
        if op.mode == "cancel":
            task = asyncio.ensure_future(send(message, DEADLINE))
            await asyncio.sleep(op.deadline_ms / 5000)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return [await send(message, DEADLINE)]
        return [await send(message, DEADLINE)]

    async def _deposit_soon(self, account: str, op: Op) -> None:
        """Funds arriving in the debited account while the identical requests race."""
        if not account:
            return
        await asyncio.sleep(op.deadline_ms / 10000)
        body = {
            "request_id": f"{self.tag}-{op.n}-funds",
            "account_id": account,
            "amount": {"currency_code": "EUR", "amount": "50.00"},
        }
        message = json_format.ParseDict(body, self.rpcs["Deposit"].request())
        await self._call("Deposit", message, self._metadata("admin"), DEADLINE)

    def _sender(self, op: Op, request: Request) -> Any:
        async def send(message: Any, within: float) -> Outcome:
            outcome = await self._call(request.method, message, self._metadata(request.sender), within)
            if outcome.code == "OK":
                self._learn(request, message, outcome)
            return outcome

        return send

    async def _call(self, method: str, message: Any, metadata: tuple[tuple[str, str], ...], within: float) -> Outcome:
        """One call; a server-streaming one (a batch run's progress) answers with its last message."""
        rpc = self.rpcs[method]
        serialize = rpc.request.SerializeToString
        try:
            if rpc.server_streaming:
                stream = self.channel.unary_stream(
                    rpc.path, request_serializer=serialize, response_deserializer=rpc.response.FromString
                )
                answers = [answer async for answer in stream(message, metadata=metadata, timeout=within)]
                return Outcome("OK", "", _resource(answers[-1]) if answers else "")
            call = self.channel.unary_unary(rpc.path, request_serializer=serialize, response_deserializer=rpc.response.FromString)
            response = await call(message, metadata=metadata, timeout=within)
        except aio.AioRpcError as error:
            return _refusal(error)
        except asyncio.CancelledError:
            return Outcome(grpc.StatusCode.CANCELLED.name)
        return Outcome("OK", "", _resource(response))

    def _learn(self, request: Request, message: Any, outcome: Outcome) -> None:
        """What an answer made, for the operations that come later."""
        owner = next((o for a, o in self.made.accounts if a == request.debits), 0)
        first = outcome.resource.split(",")[0]
        if request.method == "OpenAccount" and (first, owner) not in self.made.accounts:
            owner = self.made.customers.index(message.customer_id) if message.customer_id in self.made.customers else 0
            self.made.accounts.append((first, owner))
        elif request.method == "PlaceHold" and first not in dict(self.made.holds):
            self.made.holds.append((first, owner))
        elif request.method == "CreatePayment" and first and first not in self.made.payments:
            self.made.payments.append(first)
        elif request.method in ("Transfer", "Withdraw", "Deposit") and first not in self.made.transfers:
            self.made.transfers.append(first)
        elif request.method == "ApplyForLoan" and first not in dict(self.made.loans):
            owner = self.made.customers.index(message.customer_id) if message.customer_id in self.made.customers else 0
            self.made.loans.append((first, owner))
        elif request.method == "ChangePassword":
            self._password_changed(request, message)

    def _password_changed(self, request: Request, message: Any) -> None:
        change = (message.user_id, message.current_password, message.new_password, self.wave)
        if change not in self.answers.passwords:
            self.answers.passwords.append(change)
        c = int(request.sender.split(":")[1])
        self.made.passwords[c] = message.new_password
        self.logins[request.sender] = (self.logins[request.sender][0], message.new_password)

    async def reconcile(self) -> str:
        """ReconcileNetwork as the admin: "" when the network and the clearing account agree."""
        await self._login("admin")
        message = self.rpcs["ReconcileNetwork"].request()
        call = self.channel.unary_unary(
            self.rpcs["ReconcileNetwork"].path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.rpcs["ReconcileNetwork"].response.FromString,
        )
        report = await call(message, metadata=self._metadata("admin"), timeout=DEADLINE)
        return "; ".join(f"{d.kind} {d.payment_id} {d.transfer_id} {d.detail}" for d in report.discrepancies)

    async def settle_clock(self) -> None:
        """Time moves on a little, so that the workers take over what a lost answer left."""
        self.clock.shift(timedelta(seconds=5))


START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class ShiftedClock(Clock):
    """The wall clock, moved to START and then on by days when a history says time passes: the
    bank's workers see time go by as they would (a lease expires, a lost answer goes stale)."""

    def __init__(self) -> None:
        self._offset = START - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def shift(self, by: timedelta) -> None:
        self._offset += by
