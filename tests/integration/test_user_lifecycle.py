"""Users' lifecycle over gRPC, and the audit trail of the story: a disabled user's live token is
refused on every context's RPC, so are tokens issued before a password change or a revocation;
every money movement is recorded with the user whose authority made it and the contexts that
relayed it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import pytest
from grpc import aio

from common.grpc.client import bearer_channel
from mesh.embedded import RunningBank
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1 import account_service_pb2_grpc as agrpc
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.customer.v1 import customer_service_pb2_grpc as cgrpc
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from ogpgy.interest.v1 import interest_service_pb2 as irpb
from ogpgy.interest.v1 import interest_service_pb2_grpc as irgrpc
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from ogpgy.type.v1 import date_pb2
from tests.bank_helpers import Bank, create_user, eur, eventually
from tests.conftest import TODAY, issue_token
from tests.grpc_assert import error_reason, field_violations

PASSWORD = "alices long password"


@dataclass
class Alice:
    user_id: str
    customer_id: str
    account_id: str
    token: str


@pytest.fixture
async def alice(bank: RunningBank, channel: aio.Channel) -> Alice:
    customer_id = await Bank(channel).verified_customer("alice")
    account_id = (await Bank(channel).default_account(customer_id)).account_id
    user_id = await create_user(igrpc.IdentityServiceStub(channel), "alice", ipb.ROLE_CUSTOMER, PASSWORD, customer_id)
    return Alice(user_id, customer_id, account_id, await issue_token(bank.target, "alice", PASSWORD))


@pytest.fixture
async def as_alice(bank: RunningBank, alice: Alice) -> AsyncIterator[aio.Channel]:
    async with bearer_channel(bank.target, alice.token) as channel:
        yield channel


async def _reads_own_customer(channel: aio.Channel, alice: Alice) -> None:
    await cgrpc.CustomerServiceStub(channel).GetCustomer(cpb.GetCustomerRequest(customer_id=alice.customer_id), timeout=5)


async def _refused_with(call: Awaitable[object]) -> str:
    return (await error_reason(call, grpc.StatusCode.UNAUTHENTICATED)).reason


async def test_a_disabled_users_live_token_is_refused_at_once_and_enabling_does_not_revive_it(
    bank: RunningBank, channel: aio.Channel, alice: Alice, as_alice: aio.Channel
) -> None:
    identity = igrpc.IdentityServiceStub(channel)
    await _reads_own_customer(as_alice, alice)
    disabled = await identity.DisableUser(ipb.DisableUserRequest(request_id="off-1", user_id=alice.user_id))
    assert disabled.user.disabled and disabled.user.HasField("update_time")
    customers = cgrpc.CustomerServiceStub(as_alice)
    assert await _refused_with(customers.GetCustomer(cpb.GetCustomerRequest(customer_id=alice.customer_id))) == "TOKEN_REVOKED"
    login = igrpc.IdentityServiceStub(channel).IssueToken(ipb.IssueTokenRequest(username="alice", password=PASSWORD))
    assert (await error_reason(login, grpc.StatusCode.PERMISSION_DENIED)).reason == "USER_DISABLED"
    await identity.EnableUser(ipb.EnableUserRequest(request_id="on-1", user_id=alice.user_id))
    assert await _refused_with(customers.GetCustomer(cpb.GetCustomerRequest(customer_id=alice.customer_id))) == "TOKEN_REVOKED"
    async with bearer_channel(bank.target, await issue_token(bank.target, "alice", PASSWORD)) as fresh:
        await _reads_own_customer(fresh, alice)


async def test_a_password_change_and_a_revocation_refuse_the_tokens_issued_before(
    bank: RunningBank, alice: Alice, as_alice: aio.Channel
) -> None:
    own = igrpc.IdentityServiceStub(as_alice)
    wrong = own.ChangePassword(
        ipb.ChangePasswordRequest(
            request_id="pw-0", user_id=alice.user_id, current_password="not it at all", new_password="x" * 12
        )
    )
    assert await field_violations(wrong) == {"current_password": "does not match the current password"}
    await own.ChangePassword(
        ipb.ChangePasswordRequest(
            request_id="pw-1", user_id=alice.user_id, current_password=PASSWORD, new_password="alices new password"
        )
    )
    assert await _refused_with(own.GetUser(ipb.GetUserRequest(user_id=alice.user_id))) == "TOKEN_REVOKED"
    token = await issue_token(bank.target, "alice", "alices new password")
    async with bearer_channel(bank.target, token) as again:
        await igrpc.IdentityServiceStub(again).RevokeTokens(ipb.RevokeTokensRequest(request_id="lost", user_id=alice.user_id))
        assert await _refused_with(igrpc.IdentityServiceStub(again).GetUser(ipb.GetUserRequest(user_id=alice.user_id))) == (
            "TOKEN_REVOKED"
        )


async def test_token_revocations_are_for_contexts_and_admins(
    bank: RunningBank, channel: aio.Channel, alice: Alice, as_alice: aio.Channel
) -> None:
    await igrpc.IdentityServiceStub(channel).RevokeTokens(ipb.RevokeTokensRequest(request_id="r-1", user_id=alice.user_id))
    listed = await igrpc.IdentityServiceStub(channel).GetTokenRevocations(ipb.GetTokenRevocationsRequest())
    assert [(r.user_id, r.min_generation, r.disabled) for r in listed.revocations] == [(alice.user_id, 1, False)]
    refused = igrpc.IdentityServiceStub(as_alice).GetTokenRevocations(ipb.GetTokenRevocationsRequest())
    assert (await error_reason(refused, grpc.StatusCode.UNAUTHENTICATED)).reason == "TOKEN_REVOKED"  # hers, revoked above
    fresh = await issue_token(bank.target, "alice", PASSWORD)
    async with bearer_channel(bank.target, fresh) as channel:
        denied = igrpc.IdentityServiceStub(channel).GetTokenRevocations(ipb.GetTokenRevocationsRequest())
        assert (await error_reason(denied, grpc.StatusCode.PERMISSION_DENIED)).reason == "ACCESS_DENIED"


def _today() -> date_pb2.Date:
    return date_pb2.Date(year=TODAY.year, month=TODAY.month, day=TODAY.day)


async def test_every_money_movement_of_the_story_names_its_actor_in_the_audit_trail(
    channel: aio.Channel, alice: Alice, as_alice: aio.Channel
) -> None:
    """Alice pays (to Bob, and to another bank) and applies for a loan with her own token; the admin deposits, approves,
    disburses and runs interest. Each change is recorded with whose authority made it and which
    contexts relayed it, also where payment, lending and interest moved the money in account."""
    bank = Bank(channel)
    bob_account = (await bank.default_account(await bank.verified_customer("bob"))).account_id
    await bank.deposit(alice.account_id, "500.00", "alice")
    savings = await bank.open(alice.customer_id, "savings")
    await bank.deposit(savings, "1000.00", "savings")
    paid = await pgrpc.PaymentServiceStub(as_alice).CreatePayment(
        ppb.CreatePaymentRequest(
            request_id="pay-1",
            debtor_account_id=alice.account_id,
            internal=ppb.InternalBeneficiary(account_id=bob_account),
            amount=eur("120.00"),
        )
    )
    assert paid.payment.status == ppb.PAYMENT_STATUS_COMPLETED
    abroad = await pgrpc.PaymentServiceStub(as_alice).CreatePayment(
        ppb.CreatePaymentRequest(
            request_id="pay-2",
            debtor_account_id=alice.account_id,
            external=ppb.ExternalBeneficiary(iban="DE89370400440532013000", name="Max"),
            amount=eur("50.00"),
        )
    )
    applied = await lgrpc.LendingServiceStub(as_alice).ApplyForLoan(
        lpb.ApplyForLoanRequest(
            request_id="apply-1",
            customer_id=alice.customer_id,
            account_id=alice.account_id,
            principal=eur("2500.00"),
            term_months=24,
        )
    )
    loan_id = applied.loan.loan_id
    loans = lgrpc.LendingServiceStub(channel)
    await loans.ApproveLoan(lpb.ApproveLoanRequest(request_id="approve-1", loan_id=loan_id, annual_interest_rate="0.059"))
    await loans.DisburseLoan(lpb.DisburseLoanRequest(request_id="disburse-1", loan_id=loan_id))
    run = irpb.RunDailyInterestRequest(request_id="interest-1", business_date=_today())
    async for _ in irgrpc.InterestServiceStub(channel).RunDailyInterest(run):
        pass
    identity = igrpc.IdentityServiceStub(channel)
    admin = next(u.user_id for u in (await identity.ListUsers(ipb.ListUsersRequest())).users if u.username == "admin")
    expected = {
        ("account", "Deposit", admin, ()),
        ("payment", "CreatePayment", alice.user_id, ()),
        ("account", "PlaceHold", alice.user_id, ("payment",)),
        ("account", "CaptureHold", alice.user_id, ("payment",)),
        ("lending", "ApplyForLoan", alice.user_id, ()),
        ("lending", "ApproveLoan", admin, ()),
        ("lending", "DisburseLoan", admin, ()),
        ("account", "PlaceHold", admin, ("lending",)),
        ("account", "CaptureHold", admin, ("lending",)),
        ("account", "AccrueInterest", admin, ("interest",)),
    }

    async def recorded() -> set[tuple[str, str, str, tuple[str, ...]]]:
        rows = (await identity.ListAuditEvents(ipb.ListAuditEventsRequest(page_size=500))).audit_events
        return {(r.context, r.operation, r.actor, tuple(r.on_behalf_of)) for r in rows}

    await eventually(lambda: _includes(recorded, expected), what="the audit records of the story")
    mine = (await identity.ListAuditEvents(ipb.ListAuditEventsRequest(actor=alice.user_id, resource=loan_id))).audit_events
    assert [(r.operation, r.request_id, r.context) for r in mine] == [("ApplyForLoan", "apply-1", "lending")]
    alices = (await identity.ListAuditEvents(ipb.ListAuditEventsRequest(actor=alice.user_id, page_size=500))).audit_events
    external_holds = [r for r in alices if r.operation == "PlaceHold" and r.request_id.startswith(abroad.payment.payment_id)]
    assert [tuple(r.on_behalf_of) for r in external_holds] == [("payment",)], "the payment to another bank, through VelocityPay"
    own = {"CreatePayment", "PlaceHold", "CaptureHold", "ApplyForLoan"}  # and her payments' moves, however far they got
    assert own <= {r.operation for r in alices}
    assert all(r.operation in own or r.operation.startswith("AdvancePayment.") for r in alices)
    paid_to_bob = paid.payment.payment_id
    # an internal payment's hold is captured as it is placed: its PlaceHold is the record of both
    held = next(r.resource for r in alices if r.operation == "PlaceHold" and r.request_id.startswith(paid_to_bob))
    accounts = agrpc.AccountServiceStub(channel)
    hold = (await accounts.GetHold(apb.GetHoldRequest(hold_id=held))).hold
    transfer = (await accounts.GetTransfer(apb.GetTransferRequest(transfer_id=hold.transfer_id))).transfer
    assert hold.actor == transfer.actor == f"{alice.user_id} via payment"  # the hold and the transfer carry their actor
    refused = igrpc.IdentityServiceStub(as_alice).ListAuditEvents(ipb.ListAuditEventsRequest())
    assert (await error_reason(refused, grpc.StatusCode.PERMISSION_DENIED)).reason == "ACCESS_DENIED"


async def _includes(
    recorded: Callable[[], Awaitable[set[tuple[str, str, str, tuple[str, ...]]]]],
    expected: set[tuple[str, str, str, tuple[str, ...]]],
) -> bool:
    return expected <= await recorded()
