"""What the README promises about tokens and errors, checked against a running bank for every RPC
that server reflection lists (a new RPC is covered by itself, or this test names it):

- "Every RPC needs a token but IssueToken, GetSigningKeys, health and reflection": every other
  RPC answers UNAUTHENTICATED without one (and with a forged one), before it does anything.
- "An unknown id is NOT_FOUND for a caller who may read everything (admins); others get
  PERMISSION_DENIED, the same answer as for an id they may not see": for every id field of every
  RPC, with every other field valid.
- The errors table: each code comes with the detail type the table names.

Colocated calls keeping DEADLINE_EXCEEDED is checked by tests/integration/test_colocated_calls.py
(one hop) and tests/integration/test_deadlines.py (deadlines running out inside every hop).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.errors import (
    Aborted,
    AlreadyExists,
    AppError,
    DeadlineExceeded,
    FieldViolation,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    ValidationFailed,
)
from common.grpc.status import code_of, rich_status, unpack_detail
from tests.adversarial.world import World, build_world, quiet, running_bank, settings_for
from tests.grpc_assert import status_details
from tests.rpc_catalog import Rpc, served_rpcs

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
UNKNOWN = "0" * 26  # a well-formed id that names nothing
_requests = itertools.count()

# Fields that name a resource, by the kind of id they hold (the prefix of its ids).
ID_KINDS = {
    "customer_id": "cus",
    "account_id": "acc",
    "debit_account_id": "acc",
    "credit_account_id": "acc",
    "debtor_account_id": "acc",
    "transfer_id": "trf",
    "hold_id": "hld",
    "payment_id": "pay",
    "loan_id": "lon",
    "user_id": "usr",
    "relationship_manager_id": "usr",
    "notification_id": "ntf",
    "batch_id": "pbt",
    "saga_id": "sag-lon",  # a loan's disbursement saga: "sag-" and the loan's id
}
NOT_AN_ID = {
    "request_id",  # an idempotency key
    "after_account_id",  # a batch cursor: any position, not a resource
    "charges.request_id",  # an idempotency key of one charge
    "holds.request_id",  # an idempotency key of one hold (PlaceHolds)
    "lines.message_id",  # a bulk payment file's own ids, the sender's (pain.001 MsgId, EndToEndId)
    "lines.end_to_end_id",
    "customer.customer_id",  # UpdateCustomer's patch: output-only fields of the resource
    "customer.relationship_manager_id",
}
# Paid into: an account that exists is no secret from a payer (a payment into it goes through), so
# an unknown one is NOT_FOUND to anyone.
PAID_INTO = {"credit_account_id", "internal.account_id", "holds.credit_account_id"}
# Not looked up, by design (the README says so).
NOT_LOOKED_UP: dict[str, str] = {}

# The other fields of each RPC that takes an id, valid (JSON as grpcurl takes it).
VALID_REST: dict[str, dict[str, Any]] = {
    "RetrySaga": {"reason": "an operator's reason"},
    "CompensateSaga": {"reason": "an operator's reason"},
    "PostCharges": {
        "charges": [
            {
                "request_id": "claim-charge",
                "lines": [
                    {"internal_account": "INTERNAL_ACCOUNT_FEE_INCOME", "amount": {"currency_code": "EUR", "amount": "1.00"}}
                ],
                "description": "claim",
            }
        ]
    },
    "RepayLoan": {"amount": {"currency_code": "EUR", "amount": "1.00"}},
    "PayOffLoan": {"amount": {"currency_code": "EUR", "amount": "1.00"}},
    "OpenAccount": {"type": "ACCOUNT_TYPE_PERSONAL_CHECKING", "currency_code": "EUR"},
    "Deposit": {"amount": {"currency_code": "EUR", "amount": "1.00"}},
    "Withdraw": {"amount": {"currency_code": "EUR", "amount": "1.00"}},
    "Transfer": {"amount": {"currency_code": "EUR", "amount": "1.00"}},
    "PlaceHold": {"amount": {"currency_code": "EUR", "amount": "1.00"}},
    "ReverseTransfer": {"reason": "probe"},
    "PlaceHolds": {"holds": [{"request_id": "claim-hold", "amount": {"currency_code": "EUR", "amount": "1.00"}}]},
    "SubmitPaymentBatch": {
        "lines": {
            "lines": [
                {
                    "end_to_end_id": "probe",
                    "external": {"iban": "DE89370400440532013000", "name": "Max"},
                    "amount": {"currency_code": "EUR", "amount": "1.00"},
                }
            ],
            "number_of_transactions": 1,
            "control_sum": "1.00",
        }
    },
    "RetryPayment": {"reason": "probe"},
    "RefundPayment": {"reason": "probe"},
    "CheckAccountAccess": {"access": "ACCOUNT_ACCESS_READ"},
    "GetStatement": {"from_date": {"year": 2026, "month": 1, "day": 1}, "to_date": {"year": 2026, "month": 1, "day": 31}},
    "ExportStatement": {
        "from_date": {"year": 2026, "month": 1, "day": 1},
        "to_date": {"year": 2026, "month": 1, "day": 31},
        "format": "STATEMENT_FORMAT_CSV",
    },
    "UpdateCustomer": {"customer": {"email": "new@example.com"}, "update_mask": "email", "expected_version": 1},
    "ReviewKyc": {"decision": "KYC_DECISION_CLEAR"},
    "CreateUser": {"username": "probe-user", "password": "a-long-password-1", "roles": ["ROLE_CUSTOMER"]},
    "UpdateUser": {"roles": ["ROLE_CUSTOMER"]},
    "ChangePassword": {"new_password": "a-long-new-password"},
    "ApplyForLoan": {"principal": {"currency_code": "EUR", "amount": "100.00"}, "term_months": 12},
    "ApproveLoan": {"annual_interest_rate": "0.05"},
    "CreatePayment": {"amount": {"currency_code": "EUR", "amount": "1.00"}, "internal": {"account_id": ""}},
    "UpdateNotificationPreferences": {"opted_out_kinds": ["PAYMENT_COMPLETED"]},
}
ADMIN_ONLY = {
    "AssignRelationshipManager",
    "CreateUser",
    "GetUser",
    "ReviewKyc",
    "ApproveLoan",
    "DisburseLoan",
    "UpdateUser",
    "DisableUser",
    "EnableUser",
}


def _token_exemptions() -> set[str]:
    line = next(line for line in README.splitlines() if "needs a token but" in line)
    return set(re.findall(r"`(\w+)`", line))


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    settings = settings_for(tmp_path)
    async with running_bank(settings) as bank:
        world = await build_world(bank, settings)
        await quiet(world)
        yield world


async def _answer(channel: aio.Channel, rpc: Rpc, request: Any, metadata: tuple[tuple[str, str], ...]) -> aio.AioRpcError | None:
    """The error `rpc` answers, None for OK."""
    call = channel.unary_unary(
        rpc.path, request_serializer=type(request).SerializeToString, response_deserializer=rpc.response.FromString
    )
    try:
        await call(request, metadata=metadata, timeout=10)
    except aio.AioRpcError as error:
        return error
    return None


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_every_rpc_but_the_readmes_exemptions_needs_a_token(world: World) -> None:
    exempt = _token_exemptions()
    assert exempt == {"IssueToken", "GetSigningKeys"}, exempt
    rpcs = await asyncio.to_thread(served_rpcs, world.bank.target)
    forged = world.admin_token[:-4] + ("AAAA" if not world.admin_token.endswith("AAAA") else "BBBB")
    async with aio.insecure_channel(world.bank.target) as channel:
        for rpc in rpcs:
            for metadata, reasons in (
                ((), {"TOKEN_MISSING", "MEMBER_KEY_INVALID"}),
                (_bearer(forged), {"TOKEN_INVALID", "MEMBER_KEY_INVALID"}),
            ):
                error = await _answer(channel, rpc, rpc.request(), metadata)
                if rpc.name in exempt:
                    assert error is None or error.code() != grpc.StatusCode.UNAUTHENTICATED, rpc.path
                    continue
                assert error is not None and error.code() == grpc.StatusCode.UNAUTHENTICATED, (rpc.path, error)
                info = _detail(error, error_details_pb2.ErrorInfo)
                assert info.reason in reasons, (rpc.path, info.reason)
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert {rpc.name for rpc in rpcs} >= exempt, "the README names RPCs that are not served"


def _detail(error: aio.AioRpcError, kind: type[Any]) -> Any:
    status = rich_status(error)
    assert status is not None, f"{error.code()}: no google.rpc.Status details"
    detail = unpack_detail(status, kind)
    assert isinstance(detail, kind), f"{error.code()}: no {kind.__name__} detail"
    return detail


def _id_fields(rpc: Rpc) -> list[str]:
    """The paths of the fields that name a resource (one level into messages of ours, e.g.
    CreatePayment's internal.account_id)."""
    paths = [f.name for f in rpc.descriptor.fields if f.name.endswith("_id")]
    for outer in rpc.descriptor.fields:
        if outer.message_type is not None and outer.message_type.full_name.startswith("ogpgy."):  # repeated too
            paths += [f"{outer.name}.{f.name}" for f in outer.message_type.fields if f.name.endswith("_id")]
    paths = [p for p in paths if p not in NOT_AN_ID]
    unknown = [p for p in paths if p.rsplit(".", 1)[-1] not in ID_KINDS]
    assert not unknown, f"{rpc.path}: which kind of id is {unknown}? (add it to ID_KINDS)"
    return paths


def _request(rpc: Rpc, ids: dict[str, str]) -> Any:
    fields = {f.name for f in rpc.descriptor.fields}
    body: dict[str, Any] = json.loads(json.dumps(VALID_REST.get(rpc.name, {})))
    if "request_id" in fields:
        body["request_id"] = f"claim-{next(_requests)}"
    for path, value in ids.items():
        outer, _, inner = path.rpartition(".")
        if (outer or inner) in fields and (not outer or outer in body):
            for part in body[outer] if isinstance(body.get(outer), list) else [body[outer] if outer else body]:
                part[inner] = value
    return json_format.ParseDict(body, rpc.request())


def _hers(world: World) -> dict[str, str]:
    """Alice's resources, one for every kind of id field."""
    v = world.victim
    return {
        "customer_id": v.customer,
        "account_id": v.account,
        "debit_account_id": v.account,
        "credit_account_id": v.savings,
        "debtor_account_id": v.account,
        "internal.account_id": v.savings,
        "charges.account_id": v.account,
        "holds.debit_account_id": v.account,
        "holds.credit_account_id": v.savings,
        "batch_id": v.batch,
        "transfer_id": v.transfer,
        "hold_id": v.own_hold,
        "payment_id": v.payment_id,
        "loan_id": v.loan,
        "saga_id": f"sag-{v.loan}",
        "notification_id": v.notification,
        "user_id": world.users["alice"],
        "relationship_manager_id": world.users["rita"],
    }


def _his(world: World) -> dict[str, str]:
    """Bob's own customer and account where a request names them; paid into: Alice's."""
    own = {
        "customer_id": world.bob,
        "account_id": world.bob_account,
        "debit_account_id": world.bob_account,
        "charges.account_id": world.bob_account,
        "holds.debit_account_id": world.bob_account,
    }
    return _hers(world) | own | {"debtor_account_id": world.bob_account}


def _describe(error: aio.AioRpcError | None) -> str:
    return "OK" if error is None else f"{error.code().name}: {error.details()}"


async def test_an_unknown_id_is_not_found_for_an_admin_and_like_a_foreign_one_for_others(world: World) -> None:
    rpcs = [r for r in await asyncio.to_thread(served_rpcs, world.bank.target) if r.service.startswith("ogpgy.")]
    wrong, checked = [], []
    async with aio.insecure_channel(world.bank.target) as channel:
        for rpc in rpcs:
            for field in _id_fields(rpc):
                if f"{rpc.name}.{field}" not in NOT_LOOKED_UP:
                    checked.append(f"{rpc.name}.{field}")
                    check = _check_paid_into if field in PAID_INTO else _check_named
                    wrong += await check(channel, world, rpc, field)
    assert not wrong, "\n".join(wrong)
    assert len(checked) >= 30, checked


def _unknown_id(field: str) -> str:
    return f"{ID_KINDS[field.rsplit('.', 1)[-1]]}_{UNKNOWN}"


async def _check_named(channel: aio.Channel, world: World, rpc: Rpc, field: str) -> list[str]:
    """An admin learns that the id names nothing; Bob, only that he may not use it."""
    wrong, unknown_id, bob = [], _unknown_id(field), world.principals[0].metadata
    as_admin = await _answer(channel, rpc, _request(rpc, _hers(world) | {field: unknown_id}), _bearer(world.admin_token))
    if as_admin is None or as_admin.code() != grpc.StatusCode.NOT_FOUND:
        wrong.append(f"{rpc.name}.{field} as admin: {_describe(as_admin)}")
    elif _detail(as_admin, error_details_pb2.ResourceInfo).resource_name != unknown_id:
        wrong.append(f"{rpc.name}.{field} as admin: its ResourceInfo does not name {unknown_id}")
    unknown = await _answer(channel, rpc, _request(rpc, _his(world) | {field: unknown_id}), bob)
    foreign = await _answer(channel, rpc, _request(rpc, _his(world) | {field: _hers(world)[field]}), bob)
    alike = (
        unknown is not None and foreign is not None and (unknown.code(), unknown.details()) == (foreign.code(), foreign.details())
    )
    if not alike or unknown is None or unknown.code() != grpc.StatusCode.PERMISSION_DENIED:
        wrong.append(f"{rpc.name}.{field} as Bob: unknown {_describe(unknown)}; hers {_describe(foreign)}")
    return wrong


async def _check_paid_into(channel: aio.Channel, world: World, rpc: Rpc, field: str) -> list[str]:
    wrong = []
    for who, ids, metadata in (
        ("admin", _hers(world), _bearer(world.admin_token)),
        ("Bob", _his(world), world.principals[0].metadata),
    ):
        error = await _answer(channel, rpc, _request(rpc, ids | {field: _unknown_id(field)}), metadata)
        if error is None or error.code() != grpc.StatusCode.NOT_FOUND:
            wrong.append(f"{rpc.name}.{field} paid into by {who}: {_describe(error)}")
    return wrong


def _errors_table() -> dict[str, tuple[str, str]]:
    """The README's 'Errors you can get': code -> (when, details)."""
    section = README.split("## Errors you can get", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| `")]
    return {cells[0].strip().strip("`"): (cells[1], cells[2]) for cells in rows}


_EXAMPLES: list[AppError] = [
    ValidationFailed([FieldViolation("amount", "required")]),
    NotFound("account", "acc_1"),
    PreconditionFailed("INSUFFICIENT_FUNDS", "not enough"),
    AlreadyExists("IDEMPOTENCY_KEY_REUSED", "reused"),
    Aborted("VERSION_MISMATCH", "changed meanwhile"),
    Unauthenticated("TOKEN_MISSING", "no token"),
    PermissionDenied("ACCESS_DENIED", "no"),
    Unavailable("ACCOUNTS_UNAVAILABLE", "down"),
    DeadlineExceeded("DEADLINE_EXCEEDED", "late"),
    ResourceExhausted("LOGIN_THROTTLED", "wait", retry_after=2.0),
]


def test_the_errors_table_names_the_details_each_code_carries() -> None:
    table = _errors_table()
    for error in _EXAMPLES:
        code = code_pb2.Code.Name(code_of(error))
        assert code in table, f"{code} is answered but not in the README's errors table"
        details = [any_detail.TypeName().rsplit(".", 1)[-1] for any_detail in status_details(error)]
        assert details and all(name in table[code][1] for name in details), (code, details, table[code][1])
    assert set(table) == {code_pb2.Code.Name(code_of(e)) for e in _EXAMPLES}, "a code in the table is never answered"


def test_every_reason_the_errors_table_names_is_one_the_code_gives() -> None:
    code_text = "\n".join(p.read_text(encoding="utf-8") for d in ("common", "services") for p in (ROOT / d).rglob("*.py"))
    for code, (when, _) in _errors_table().items():
        for reason in set(re.findall(r"`([A-Z][A-Z_]+)`", when)) - set(code_pb2.Code.keys()):
            assert f'"{reason}"' in code_text, f"{code}: the README names {reason}, which nothing raises"
