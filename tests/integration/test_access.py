"""Access control on every RPC family of every context, bad tokens, and PII masking."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt
import pytest
from google.protobuf import field_mask_pb2
from grpc import aio

from common.config import Settings
from common.grpc.client import bearer_channel
from common.security.component import Security
from common.security.context import SecurityContext
from common.security.tokens import TokenSettings, issue
from mesh.embedded import RunningBank
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1 import account_service_pb2_grpc as agrpc
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.customer.v1 import customer_service_pb2_grpc as cgrpc
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from ogpgy.type.v1 import date_pb2
from tests.bank_helpers import Bank, create_user, eur, fresh_document
from tests.conftest import ADMIN_PASSWORD, TODAY, document, issue_token, onboarding
from tests.grpc_assert import error_reason, field_violations, rpc_error

ROLES = ("admin", "rm", "other_rm", "customer", "other_customer")  # other_rm manages nobody
PASSWORD = "password-of-test-users"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The matrix runs on SQLite only: access control does not depend on the engine."""
    return Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD)


@dataclass
class World:
    target: str
    tokens: dict[str, str]
    users: dict[str, str]
    alice: str
    bob: str
    alice_account: str
    bob_account: str
    alice_deposit: str  # a transfer: the bank's cash account to Alice's
    alice_payment: str  # from Alice's account to Bob's
    alice_loan: str  # disbursed into her account
    admin: Bank
    admin_security: Security

    def stubs(
        self, channel: aio.Channel
    ) -> tuple[cgrpc.CustomerServiceStub, agrpc.AccountServiceStub, igrpc.IdentityServiceStub]:
        return cgrpc.CustomerServiceStub(channel), agrpc.AccountServiceStub(channel), igrpc.IdentityServiceStub(channel)


@pytest.fixture
async def world(bank: RunningBank, admin_token: str) -> AsyncIterator[World]:
    async with bearer_channel(bank.target, admin_token) as channel:
        admin = Bank(channel)
        identity = igrpc.IdentityServiceStub(channel)
        alice, bob = await admin.verified_customer("alice"), await admin.verified_customer("bob")
        alice_account = (await admin.default_account(alice)).account_id
        bob_account = (await admin.default_account(bob)).account_id
        deposited = await admin.accounts.Deposit(
            apb.DepositRequest(request_id="dep-alice", account_id=alice_account, amount=eur("100.00"))
        )
        await admin.deposit(bob_account, "100.00", "bob")
        paid = await pgrpc.PaymentServiceStub(channel).CreatePayment(
            ppb.CreatePaymentRequest(
                request_id="alice-pays-bob",
                debtor_account_id=alice_account,
                amount=eur("1.00"),
                internal=ppb.InternalBeneficiary(account_id=bob_account),
            )
        )
        alice_loan = await _disbursed_loan(channel, alice, alice_account)
        users = {
            "rm": await create_user(identity, "rita.rm", ipb.ROLE_RELATIONSHIP_MANAGER, PASSWORD),
            "other_rm": await create_user(identity, "ron.rm", ipb.ROLE_RELATIONSHIP_MANAGER, PASSWORD),
            "customer": await create_user(identity, "alice", ipb.ROLE_CUSTOMER, PASSWORD, alice),
            "other_customer": await create_user(identity, "bob", ipb.ROLE_CUSTOMER, PASSWORD, bob),
        }
        await admin.customers.AssignRelationshipManager(
            cpb.AssignRelationshipManagerRequest(request_id="assign", customer_id=alice, relationship_manager_id=users["rm"])
        )
        names = {"rm": "rita.rm", "other_rm": "ron.rm", "customer": "alice", "other_customer": "bob"}
        tokens = {"admin": admin_token} | {role: await issue_token(bank.target, name, PASSWORD) for role, name in names.items()}
        yield World(
            bank.target,
            tokens,
            users,
            alice,
            bob,
            alice_account,
            bob_account,
            deposited.transfer.transfer_id,
            paid.payment.payment_id,
            alice_loan,
            admin,
            bank.contexts["infrastructure"].resolve(Security),
        )


async def _disbursed_loan(channel: aio.Channel, customer: str, account: str) -> str:
    lending = lgrpc.LendingServiceStub(channel)
    applied = await lending.ApplyForLoan(
        lpb.ApplyForLoanRequest(
            request_id="loan", customer_id=customer, account_id=account, principal=eur("100.00"), term_months=6
        )
    )
    loan_id = applied.loan.loan_id
    await lending.ApproveLoan(lpb.ApproveLoanRequest(request_id="approve", loan_id=loan_id, annual_interest_rate="0.05"))
    await lending.DisburseLoan(lpb.DisburseLoanRequest(request_id="disburse", loan_id=loan_id))
    return loan_id


Call = Callable[[World, aio.Channel, str], Awaitable[object]]


def _customer_calls() -> dict[str, tuple[Call, set[str]]]:
    def stubs(w: World, ch: aio.Channel):
        return w.stubs(ch)

    return {
        "OnboardCustomer": (
            lambda w, ch, r: stubs(w, ch)[0].OnboardCustomer(onboarding(f"on-{r}", document=document(fresh_document()))),
            {"admin"},
        ),
        "GetCustomer": (
            lambda w, ch, r: stubs(w, ch)[0].GetCustomer(cpb.GetCustomerRequest(customer_id=w.alice)),
            {"admin", "rm", "customer"},
        ),
        "UpdateCustomer": (
            lambda w, ch, r: stubs(w, ch)[0].UpdateCustomer(
                cpb.UpdateCustomerRequest(
                    request_id=f"up-{r}",
                    customer_id=w.alice,
                    customer=cpb.Customer(phone="+4915112345678"),
                    update_mask=field_mask_pb2.FieldMask(paths=["phone"]),
                )
            ),
            {"admin", "customer"},
        ),
        "AssignRelationshipManager": (
            lambda w, ch, r: stubs(w, ch)[0].AssignRelationshipManager(
                cpb.AssignRelationshipManagerRequest(request_id=f"as-{r}", customer_id=w.bob, relationship_manager_id="")
            ),
            {"admin"},
        ),
        "ReviewKyc": (  # Alice is verified already: an admin is told so, the others are refused before
            lambda w, ch, r: stubs(w, ch)[0].ReviewKyc(
                cpb.ReviewKycRequest(request_id=f"kyc-{r}", customer_id=w.alice, decision=cpb.KYC_DECISION_REJECT)
            ),
            {"admin"},
        ),
    }


def _account_calls() -> dict[str, tuple[Call, set[str]]]:
    readers = {"admin", "rm", "customer"}
    spenders = {"admin", "customer"}
    return {
        "GetAccount": (lambda w, ch, r: w.stubs(ch)[1].GetAccount(apb.GetAccountRequest(account_id=w.alice_account)), readers),
        "ListAccounts": (lambda w, ch, r: w.stubs(ch)[1].ListAccounts(apb.ListAccountsRequest(customer_id=w.alice)), readers),
        "ListEntries": (lambda w, ch, r: w.stubs(ch)[1].ListEntries(apb.ListEntriesRequest(account_id=w.alice_account)), readers),
        "OpenAccount": (
            lambda w, ch, r: w.stubs(ch)[1].OpenAccount(
                apb.OpenAccountRequest(
                    request_id=f"op-{r}", customer_id=w.alice, type=apb.ACCOUNT_TYPE_PERSONAL_SAVINGS, currency_code="EUR"
                )
            ),
            spenders,
        ),
        "Deposit": (
            lambda w, ch, r: w.stubs(ch)[1].Deposit(
                apb.DepositRequest(request_id=f"dp-{r}", account_id=w.alice_account, amount=eur("1.00"))
            ),
            {"admin"},
        ),
        "Withdraw": (
            lambda w, ch, r: w.stubs(ch)[1].Withdraw(
                apb.WithdrawRequest(request_id=f"wd-{r}", account_id=w.alice_account, amount=eur("1.00"))
            ),
            spenders,
        ),
        "Transfer": (
            lambda w, ch, r: w.stubs(ch)[1].Transfer(
                apb.TransferRequest(
                    request_id=f"tr-{r}", debit_account_id=w.alice_account, credit_account_id=w.bob_account, amount=eur("1.00")
                )
            ),
            spenders,
        ),
        "PlaceHold": (
            lambda w, ch, r: w.stubs(ch)[1].PlaceHold(
                apb.PlaceHoldRequest(
                    request_id=f"ph-{r}", debit_account_id=w.alice_account, credit_account_id=w.bob_account, amount=eur("1.00")
                )
            ),
            spenders,
        ),
        "GetTransfer": (
            lambda w, ch, r: w.stubs(ch)[1].GetTransfer(apb.GetTransferRequest(transfer_id=w.alice_deposit)),
            readers,
        ),
        "ReverseTransfer": (_reverse_fresh_transfer, {"admin"}),
        "CloseAccount": (
            lambda w, ch, r: w.stubs(ch)[1].CloseAccount(apb.CloseAccountRequest(request_id=f"cl-{r}", account_id=w.bob_account)),
            {"admin", "other_customer"},
        ),
    }


async def _reverse_fresh_transfer(w: World, ch: aio.Channel, role: str) -> object:
    moved = await w.admin.accounts.Transfer(
        apb.TransferRequest(
            request_id=f"rv-src-{role}", debit_account_id=w.alice_account, credit_account_id=w.bob_account, amount=eur("0.50")
        )
    )
    return await w.stubs(ch)[1].ReverseTransfer(
        apb.ReverseTransferRequest(request_id=f"rv-{role}", transfer_id=moved.transfer.transfer_id)
    )


def _identity_calls() -> dict[str, tuple[Call, set[str]]]:
    return {
        "CreateUser": (
            lambda w, ch, r: w.stubs(ch)[2].CreateUser(
                ipb.CreateUserRequest(
                    request_id=f"cu-{r}", username=f"new.{r}", password=PASSWORD, roles=[ipb.ROLE_CUSTOMER], customer_id=w.bob
                )
            ),
            {"admin"},
        ),
        "ListUsers": (lambda w, ch, r: w.stubs(ch)[2].ListUsers(ipb.ListUsersRequest()), {"admin"}),
        "GetUser(other)": (
            lambda w, ch, r: w.stubs(ch)[2].GetUser(ipb.GetUserRequest(user_id=w.users["other_customer"])),
            {"admin", "other_customer"},
        ),
        "GetTokenRevocations": (
            lambda w, ch, r: w.stubs(ch)[2].GetTokenRevocations(ipb.GetTokenRevocationsRequest()),
            {"admin"},
        ),
    }


def _lending_calls() -> dict[str, tuple[Call, set[str]]]:
    readers = {"admin", "rm", "customer"}

    def loans(ch: aio.Channel) -> lgrpc.LendingServiceStub:
        return lgrpc.LendingServiceStub(ch)

    async def collect(w: World, ch: aio.Channel, r: str) -> object:
        day = date_pb2.Date(year=TODAY.year, month=TODAY.month, day=TODAY.day)
        request = lpb.RunCollectionRequest(request_id=f"col-{r}", business_date=day, currency_code="EUR")
        return [progress async for progress in loans(ch).RunCollection(request)]

    return {
        "GetLoan": (lambda w, ch, r: loans(ch).GetLoan(lpb.GetLoanRequest(loan_id=w.alice_loan)), readers),
        "ListLoans": (lambda w, ch, r: loans(ch).ListLoans(lpb.ListLoansRequest(customer_id=w.alice)), readers),
        "ListRepayments": (lambda w, ch, r: loans(ch).ListRepayments(lpb.ListRepaymentsRequest(loan_id=w.alice_loan)), readers),
        "DisburseLoan": (  # disbursed already: an admin is answered with it
            lambda w, ch, r: loans(ch).DisburseLoan(lpb.DisburseLoanRequest(request_id=f"db-{r}", loan_id=w.alice_loan)),
            {"admin"},
        ),
        "RunCollection": (collect, {"admin"}),
    }


def _payment_calls() -> dict[str, tuple[Call, set[str]]]:
    def payments(ch: aio.Channel) -> pgrpc.PaymentServiceStub:
        return pgrpc.PaymentServiceStub(ch)

    return {
        "CreatePayment": (
            lambda w, ch, r: payments(ch).CreatePayment(
                ppb.CreatePaymentRequest(
                    request_id=f"pay-{r}",
                    debtor_account_id=w.alice_account,
                    amount=eur("1.00"),
                    internal=ppb.InternalBeneficiary(account_id=w.bob_account),
                )
            ),
            {"admin", "customer"},
        ),
        "ListPayments": (
            lambda w, ch, r: payments(ch).ListPayments(ppb.ListPaymentsRequest(debtor_account_id=w.alice_account)),
            {"admin", "rm", "customer"},
        ),
        "GetPayment": (
            lambda w, ch, r: payments(ch).GetPayment(ppb.GetPaymentRequest(payment_id=w.alice_payment)),
            {"admin", "rm", "customer"},  # Bob is paid by it, and reads it from his entries, not here
        ),
        "ReconcileNetwork": (lambda w, ch, r: payments(ch).ReconcileNetwork(ppb.ReconcileNetworkRequest()), {"admin"}),
    }


MATRIX = (
    {f"payment.{k}": v for k, v in _payment_calls().items()}
    | {f"customer.{k}": v for k, v in _customer_calls().items()}
    | {f"account.{k}": v for k, v in _account_calls().items()}
    | {f"identity.{k}": v for k, v in _identity_calls().items()}
    | {f"lending.{k}": v for k, v in _lending_calls().items()}
)


async def test_access_matrix(world: World) -> None:
    """Each role x each RPC family: allowed calls are not refused, the others are PERMISSION_DENIED."""
    outcomes: dict[tuple[str, str], str] = {}
    for family, (call, _) in MATRIX.items():
        for role in ROLES:
            async with bearer_channel(world.target, world.tokens[role]) as channel:
                try:
                    await call(world, channel, role)
                    outcomes[(family, role)] = "allowed"
                except grpc.aio.AioRpcError as err:
                    if err.code() == grpc.StatusCode.PERMISSION_DENIED:
                        outcomes[(family, role)] = "denied"
                    elif err.code() == grpc.StatusCode.FAILED_PRECONDITION:  # past the access check, refused by a rule
                        outcomes[(family, role)] = "allowed"
                    else:
                        outcomes[(family, role)] = f"{err.code().name}: {err.details()}"
    wrong = {key: got for key, got in outcomes.items() if got != ("allowed" if key[1] in MATRIX[key[0]][1] else "denied")}
    assert not wrong, f"unexpected outcomes: {wrong}"


async def test_listings_show_only_what_the_caller_may_see(world: World) -> None:
    async def listed(role: str) -> set[str]:
        async with bearer_channel(world.target, world.tokens[role]) as channel:
            return {
                c.customer_id
                for c in (await cgrpc.CustomerServiceStub(channel).ListCustomers(cpb.ListCustomersRequest())).customers
            }

    assert await listed("admin") >= {world.alice, world.bob}
    assert await listed("rm") == {world.alice}
    assert await listed("customer") == {world.alice}
    assert await listed("other_customer") == {world.bob}


async def test_personal_data_is_masked_for_callers_who_may_not_read_it(world: World) -> None:
    async def seen_by(role: str) -> cpb.Customer:
        async with bearer_channel(world.target, world.tokens[role]) as channel:
            return (
                await cgrpc.CustomerServiceStub(channel).GetCustomer(cpb.GetCustomerRequest(customer_id=world.alice))
            ).customer

    full = await seen_by("admin")
    assert full.document.number.isalnum() and full.date_of_birth.year == 1990 and full.address.city == "London"
    assert await seen_by("customer") == full
    world.tokens["account context"] = world.admin_security.service_token("account")  # imports GetCustomer, acts alone
    for role in ("rm", "account context"):
        masked = await seen_by(role)
        assert masked.document.number == "*******" + full.document.number[-2:]
        assert not masked.HasField("date_of_birth") and masked.address.city == "***"
        assert masked.email == full.email and masked.kyc == full.kyc, "what they need stays visible"


async def test_no_user_may_hold_the_service_role(world: World) -> None:
    request = ipb.CreateUserRequest(request_id="user-svc", username="svc.payments", password=PASSWORD, roles=[ipb.ROLE_SERVICE])
    async with bearer_channel(world.target, world.tokens["admin"]) as channel:
        violations = await field_violations(igrpc.IdentityServiceStub(channel).CreateUser(request))
    assert "roles" in violations


async def test_only_a_relationship_manager_may_be_assigned(world: World) -> None:
    assign = world.admin.customers.AssignRelationshipManager
    not_rm = await error_reason(
        assign(
            cpb.AssignRelationshipManagerRequest(
                request_id="assign-customer-user", customer_id=world.bob, relationship_manager_id=world.users["customer"]
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert not_rm.reason == "NOT_A_RELATIONSHIP_MANAGER"
    await rpc_error(
        assign(
            cpb.AssignRelationshipManagerRequest(
                request_id="assign-nobody", customer_id=world.bob, relationship_manager_id="usr_00000000000000000000000000"
            )
        ),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_unassigning_the_manager_revokes_access_in_every_context(world: World) -> None:
    await world.admin.customers.AssignRelationshipManager(
        cpb.AssignRelationshipManagerRequest(request_id="unassign", customer_id=world.alice, relationship_manager_id="")
    )
    async with bearer_channel(world.target, world.tokens["rm"]) as channel:
        await rpc_error(
            cgrpc.CustomerServiceStub(channel).GetCustomer(cpb.GetCustomerRequest(customer_id=world.alice)),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        deadline = time.monotonic() + 5
        while True:  # the account context learns it from CustomerUpdated
            try:
                await agrpc.AccountServiceStub(channel).GetAccount(apb.GetAccountRequest(account_id=world.alice_account))
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.PERMISSION_DENIED
                break
            assert time.monotonic() < deadline, "the account context kept the stale assignment"


def _forged(bank: RunningBank, **overrides: object) -> str:
    security = bank.contexts["infrastructure"].resolve(Security)
    settings = TokenSettings(**{**security.token_settings.__dict__, **overrides})
    return issue(security.private_key, settings, SecurityContext("usr_x", "x", ("admin",)))[0]


async def test_bad_tokens_are_unauthenticated(bank: RunningBank, admin_token: str) -> None:
    header, payload, signature = admin_token.split(".")
    claims = jwt.decode(admin_token, options={"verify_signature": False})
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    bad = {
        "missing": None,
        "expired": _forged(bank, ttl_seconds=-60),
        "tampered": f"{header}.{payload[:-4]}AAAA.{signature}",
        "wrong audience": await issue_token(bank.target, audience="somebody-else"),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "other key": jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA"),
        "not bearer": f"Basic {admin_token}",
    }
    for name, token in bad.items():
        metadata = () if token is None else (("authorization", token if token.startswith("Basic") else f"Bearer {token}"),)
        async with aio.insecure_channel(bank.target) as channel:
            err = await rpc_error(
                cgrpc.CustomerServiceStub(channel).ListCustomers(cpb.ListCustomersRequest(), metadata=metadata),
                grpc.StatusCode.UNAUTHENTICATED,
            )
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED, name
    async with aio.insecure_channel(bank.target) as channel:
        wrong = ipb.IssueTokenRequest(username="admin", password="not-the-password")
        await rpc_error(igrpc.IdentityServiceStub(channel).IssueToken(wrong), grpc.StatusCode.UNAUTHENTICATED)


async def test_tokens_and_personal_data_never_reach_the_logs(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with bearer_channel(world.target, world.tokens["customer"]) as channel:
        customer = (
            await cgrpc.CustomerServiceStub(channel).GetCustomer(cpb.GetCustomerRequest(customer_id=world.alice))
        ).customer
        await rpc_error(
            agrpc.AccountServiceStub(channel).GetAccount(apb.GetAccountRequest(account_id=world.bob_account)),
            grpc.StatusCode.PERMISSION_DENIED,
        )
    text = caplog.text
    assert text, "something was logged"
    for secret in [*world.tokens.values(), customer.document.number, PASSWORD, ADMIN_PASSWORD]:
        assert secret not in text
