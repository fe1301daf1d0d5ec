"""The attacks that moved real money, as regression tests (each failed on the code before the fix),
and the classes they belong to: requests replayed by another principal, refusals that leave a
trace (ids that can be probed: tests/contract/test_readme_claims.py). On both engines where
storage matters."""

from __future__ import annotations

import asyncio
import random

import grpc
from grpc import aio

from common.grpc.client import bearer_channel
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1 import account_service_pb2_grpc as agrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from services.velocitypay.simulator import faults_pb
from tests.adversarial.snapshot import differences, snapshot
from tests.adversarial.world import EXTERNAL_IBAN, World, quiet
from tests.bank_helpers import eur, eventually
from tests.grpc_assert import error_reason, rpc_error
from tests.ledger_checks import broken_ledger
from velocitypay.v1 import network_pb2 as vpb
from velocitypay.v1 import network_pb2_grpc as vgrpc


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _balance(world: World, account: str) -> tuple[str, str]:
    async with bearer_channel(world.bank.target, world.admin_token) as channel:
        got = (await agrpc.AccountServiceStub(channel).GetAccount(apb.GetAccountRequest(account_id=account))).account
    return got.balance.amount, got.available_balance.amount


async def test_a_tiny_deadline_never_debits_someone_elses_account(world: World) -> None:
    """Attack 1: Bob (and relationship managers, assigned or not) pay from Alice's account with a
    deadline of 0.2-4 ms, to an account of the bank and to an external IBAN. Before the fix, some
    answered UNAVAILABLE and the worker paid them seconds later under the payment context's own
    identity. Now: nothing of hers moves, no row is written, also once the workers have run."""
    before, alice_before = await snapshot(world.settings), await _balance(world, world.victim.account)
    rng = random.Random(3)
    answers: dict[str, int] = {}
    async with aio.insecure_channel(world.bank.target) as channel:
        payments = pgrpc.PaymentServiceStub(channel)
        for who in world.principals:
            for i in range(40):
                beneficiary = (
                    {"internal": ppb.InternalBeneficiary(account_id=world.bob_account)}
                    if i % 2
                    else {"external": ppb.ExternalBeneficiary(iban=EXTERNAL_IBAN, name="Bob")}
                )
                request = ppb.CreatePaymentRequest(
                    request_id=f"steal-{who.name[:8].replace(' ', '-')}-{i}",
                    debtor_account_id=world.victim.account,
                    amount=eur("1.00"),
                    **beneficiary,
                )
                try:
                    await payments.CreatePayment(request, metadata=who.metadata, timeout=rng.uniform(0.0002, 0.004))
                    answers["OK"] = answers.get("OK", 0) + 1
                except aio.AioRpcError as error:
                    answers[error.code().name] = answers.get(error.code().name, 0) + 1
    assert set(answers) <= {"PERMISSION_DENIED", "DEADLINE_EXCEEDED"}, answers
    await asyncio.sleep(2.5)  # the store-and-forward worker takes pending payments over after 0.5 s
    await quiet(world)
    assert await _balance(world, world.victim.account) == alice_before
    assert not differences(before, await snapshot(world.settings)), "a refused payment left something behind"


async def test_a_payment_the_network_settled_cannot_be_taken_back(world: World) -> None:
    """Attack 2: during an outage Alice's external payment is QUEUED with a hold. She replays the
    payment's PlaceHold (its request id derives from the payment id; into the clearing account it is
    refused, into Bob's it is hers) and releases what she gets.
    Before the fix that was the payment's hold: she spent the money, the network settled anyway,
    and the payment stayed QUEUED forever. Now her replay is her own request (a hold of her own),
    the payment's hold is the payment context's, and the network's settlement is booked once."""
    v = world.victim
    async with (
        bearer_channel(world.bank.target, world.alice_token) as channel,
        bearer_channel(world.bank.target, world.admin_token) as network,
    ):
        accounts = agrpc.AccountServiceStub(channel)
        into_clearing = apb.PlaceHoldRequest(
            request_id=v.payment_hold_request,
            debit_account_id=v.account,
            credit_account_id="acc_CLEARING_EUR",
            amount=eur("20.00"),
        )
        refused = await error_reason(accounts.PlaceHold(into_clearing), grpc.StatusCode.PERMISSION_DENIED)
        assert refused.reason == "INTERNAL_ACCOUNT", "the clearing account is the payment context's to move"
        replayed = (
            await accounts.PlaceHold(
                apb.PlaceHoldRequest(
                    request_id=v.payment_hold_request,
                    debit_account_id=v.account,
                    credit_account_id=world.bob_account,
                    amount=eur("20.00"),
                )
            )
        ).hold
        assert replayed.hold_id != v.payment_hold and replayed.owner_context == "", "her replay made a hold of her own"
        await accounts.ReleaseHold(apb.ReleaseHoldRequest(request_id="alice-releases-her-own", hold_id=replayed.hold_id))
        seen = (await accounts.GetHold(apb.GetHoldRequest(hold_id=v.payment_hold))).hold
        assert seen.owner_context == "payment" and seen.status == apb.HOLD_STATUS_PLACED, "she sees the payment's hold"
        for take_back in (
            accounts.ReleaseHold(apb.ReleaseHoldRequest(request_id="alice-takes-it-back", hold_id=v.payment_hold)),
            accounts.CaptureHold(apb.CaptureHoldRequest(request_id="alice-captures-it", hold_id=v.payment_hold)),
        ):
            assert (await error_reason(take_back, grpc.StatusCode.PERMISSION_DENIED)).reason == "HOLD_OWNED_BY_CONTEXT"
        balance, available = await _balance(world, v.account)
        await vgrpc.SimulatorControlServiceStub(network).SetFaults(
            vpb.SetFaultsRequest(faults=faults_pb())
        )  # the network is back

        async def completed() -> bool:
            got = await pgrpc.PaymentServiceStub(channel).GetPayment(ppb.GetPaymentRequest(payment_id=v.payment_id))
            return got.payment.status == ppb.PAYMENT_STATUS_COMPLETED

        await eventually(completed, 15, "the queued payment completed")
    assert await _balance(world, v.account) == (f"{float(balance) - 20:.2f}", available), "paid once, from the held funds"
    async with bearer_channel(world.bank.target, world.admin_token) as channel:
        report = await pgrpc.PaymentServiceStub(channel).ReconcileNetwork(ppb.ReconcileNetworkRequest())
    assert (report.network_settled, report.matched, report.in_flight, list(report.discrepancies)) == (1, 1, 0, [])
    assert not await broken_ledger(world.settings)


async def test_a_request_id_belongs_to_the_principal_that_used_it(world: World) -> None:
    """Bob resending Alice's exact request got her payment back (the answer came before any access
    check); a request id Alice used was taken for everyone."""
    v = world.victim
    request = ppb.CreatePaymentRequest(
        request_id="lunch",
        debtor_account_id=v.account,
        amount=eur("12.50"),
        internal=ppb.InternalBeneficiary(account_id=world.bob_account),
        reference="lunch",
    )
    async with aio.insecure_channel(world.bank.target) as channel:
        payments = pgrpc.PaymentServiceStub(channel)
        first = (await payments.CreatePayment(request, metadata=_bearer(world.alice_token))).payment
        assert first.status == ppb.PAYMENT_STATUS_COMPLETED
        assert (await payments.CreatePayment(request, metadata=_bearer(world.alice_token))).payment == first, (
            "her retry: her answer"
        )
        bob = world.principals[0].metadata
        await rpc_error(payments.CreatePayment(request, metadata=bob), grpc.StatusCode.PERMISSION_DENIED)
        own = ppb.CreatePaymentRequest(
            request_id="lunch",
            debtor_account_id=world.bob_account,
            amount=eur("3.00"),
            internal=ppb.InternalBeneficiary(account_id=v.account),
        )
        assert (await payments.CreatePayment(own, metadata=bob)).payment.payment_id != first.payment_id, (
            "his own key, his own payment"
        )
        changed = ppb.CreatePaymentRequest(
            request_id="lunch",
            debtor_account_id=v.account,
            amount=eur("99.00"),
            internal=ppb.InternalBeneficiary(account_id=world.bob_account),
        )
        reused = await error_reason(
            payments.CreatePayment(changed, metadata=_bearer(world.alice_token)), grpc.StatusCode.ALREADY_EXISTS
        )
        assert reused.reason == "IDEMPOTENCY_KEY_REUSED"


async def test_a_refused_payment_leaves_no_trace_in_the_victims_history(world: World) -> None:
    """A refused CreatePayment used to leave a row in the victim's history (FAILED ACCESS_DENIED,
    or REJECTED AMOUNT_LIMIT_EXCEEDED when screening ran first) with the attacker's text."""
    async with aio.insecure_channel(world.bank.target) as channel:
        payments = pgrpc.PaymentServiceStub(channel)
        for amount in ("1.00", "50000.00"):  # the second one is above the fraud limit
            request = ppb.CreatePaymentRequest(
                request_id=f"graffiti-{amount.replace('.', '-')}",
                debtor_account_id=world.victim.account,
                amount=eur(amount),
                reference="Bob was here",
                internal=ppb.InternalBeneficiary(account_id=world.bob_account),
            )
            await rpc_error(
                payments.CreatePayment(request, metadata=world.principals[0].metadata), grpc.StatusCode.PERMISSION_DENIED
            )
        history = await payments.ListPayments(
            ppb.ListPaymentsRequest(debtor_account_id=world.victim.account), metadata=_bearer(world.alice_token)
        )
    assert [p.reference for p in history.payments if p.reference == "Bob was here"] == []


async def test_only_a_context_may_relay_for_a_user(world: World) -> None:
    """A user's token with a subject or a chain of contexts of its own making is refused before
    anything runs: acting for someone else is what a context does, with its own identity."""
    bob = world.principals[0].metadata
    async with aio.insecure_channel(world.bank.target) as channel:
        accounts = agrpc.AccountServiceStub(channel)
        for extra in ((("x-ogpgy-subject", world.alice_token),), (("x-ogpgy-via", "payment"),)):
            call = accounts.GetAccount(apb.GetAccountRequest(account_id=world.victim.account), metadata=bob + extra)
            assert (await error_reason(call, grpc.StatusCode.PERMISSION_DENIED)).reason == "RELAY_NOT_ALLOWED"
