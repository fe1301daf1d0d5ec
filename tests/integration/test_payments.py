"""Payments against a VelocityPay simulator served on its own port, with injected faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc import aio

from common.config import Settings
from common.grpc.client import bearer_channel
from common.idempotency import IdempotencyKey
from common.resilience.breaker import OPEN
from mesh.embedded import RunningBank, start_embedded, start_process
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from services.account import movements
from services.account.repository import AccountUnits
from services.payment.adapters import VelocityPayGateway
from services.payment.ports import PaymentNetwork
from services.velocitypay.module import VelocityPayModule
from services.velocitypay.simulator import MEMBER_KEY_HEADER, faults_pb
from tests.bank_helpers import Bank, admin_channel, eur, eventually
from tests.conftest import ADMIN_PASSWORD, issue_token
from tests.grpc_assert import error_reason, field_violations, rpc_error
from tests.servers import PostgresServer, RedisServer
from velocitypay.v1 import network_pb2 as vpb
from velocitypay.v1 import network_pb2_grpc as vgrpc

GOOD_IBAN = "DE89370400440532013000"
FAIL_MAX = 3


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[str]:
    """The simulator as the outside world: its own process's server, port and ledger; it knows the
    bank by the member key in the bank's data directory."""
    settings = Settings(data_dir=tmp_path / "network", port=0, network_member_key_path=tmp_path / "velocitypay-member-key")
    running = await start_process(settings, [VelocityPayModule])
    yield running.target
    await running.stop(0)


def _settings(tmp_path: Path, network: str, **extra: object) -> Settings:
    return Settings(
        data_dir=tmp_path,
        port=0,
        admin_password=ADMIN_PASSWORD,
        addresses={"velocitypay": network},
        breaker_fail_max=FAIL_MAX,
        breaker_reset_seconds=1.5,
        network_timeout_seconds=0.3,
        queue_poll_seconds=0.05,
        **extra,
    )


@dataclass
class Setup:
    bank: RunningBank
    client: Bank
    payments: pgrpc.PaymentServiceStub
    control: vgrpc.SimulatorControlServiceStub
    accounts: list[str]

    async def stats(self) -> vpb.GetStatsResponse:
        return await self.control.GetStats(vpb.GetStatsRequest())

    async def pay_out(self, rid: str, account: str, amount: str = "10.00") -> ppb.Payment:
        request = ppb.CreatePaymentRequest(
            request_id=rid,
            debtor_account_id=account,
            amount=eur(amount),
            external=ppb.ExternalBeneficiary(iban=GOOD_IBAN, name="Max Muster"),
        )
        return (await self.payments.CreatePayment(request)).payment


@pytest.fixture
async def setup(tmp_path: Path, network: str) -> AsyncIterator[Setup]:
    bank = await start_embedded(_settings(tmp_path, network))
    async with admin_channel(bank.target) as channel, aio.insecure_channel(network) as net:
        client = Bank(channel)
        accounts = []
        for i in range(3):
            accounts.append((await client.default_account(await client.verified_customer(f"pay-{i}"))).account_id)
            await client.deposit(accounts[-1], "1000.00", f"pay-{i}")
        yield Setup(bank, client, pgrpc.PaymentServiceStub(channel), vgrpc.SimulatorControlServiceStub(net), accounts)
    await bank.stop(grace=1)


async def test_an_external_payment_names_its_payee_on_the_payers_statement(setup: Setup) -> None:
    """The ledger's counterparty of a payment to another bank is the clearing account: the payer's
    entry names the payee (name, IBAN) and the reference as fields of their own; the clearing
    account's entry carries the reference, not the payee (its counterparty is the payer)."""
    payee = ppb.ExternalBeneficiary(iban=GOOD_IBAN, name="Max Muster")
    request = ppb.CreatePaymentRequest(
        request_id="named-1", debtor_account_id=setup.accounts[0], amount=eur("12.00"), external=payee, reference="Invoice 42"
    )
    payment = (await setup.payments.CreatePayment(request)).payment

    async def completed() -> bool:
        got = await setup.payments.GetPayment(ppb.GetPaymentRequest(payment_id=payment.payment_id))
        return bool(got.payment.status == ppb.PAYMENT_STATUS_COMPLETED)

    await eventually(completed, 15, "the payment completed")
    entries = (await setup.client.accounts.ListEntries(apb.ListEntriesRequest(account_id=setup.accounts[0]))).entries
    mine = entries[-1]
    assert (mine.amount.amount, mine.description, mine.reference) == ("-12.00", "Payment to Max Muster", "Invoice 42")
    assert (mine.counterparty_name, mine.counterparty_iban, mine.counterparty_account_id) == (
        "Max Muster",
        GOOD_IBAN,
        "acc_CLEARING_EUR",
    )
    clearing = await setup.client.accounts.ListEntries(apb.ListEntriesRequest(account_id="acc_CLEARING_EUR", page_size=1000))
    [theirs] = [e for e in clearing.entries if e.transfer_id == mine.transfer_id]
    assert (theirs.counterparty_name, theirs.reference, theirs.description) == ("", "Invoice 42", "Payment to Max Muster")


async def test_outage_queues_payments_then_the_queue_drains_once(setup: Setup) -> None:
    await setup.control.SetFaults(vpb.SetFaultsRequest(faults=faults_pb(outage=True)))
    gateway = setup.bank.contexts["payment"].resolve(PaymentNetwork)
    assert isinstance(gateway, VelocityPayGateway)
    made = [await setup.pay_out(f"out-{i}", setup.accounts[i % 3]) for i in range(FAIL_MAX)]
    assert gateway.breaker.state == OPEN, "opened after fail_max failures"
    seen_when_opened = (await setup.stats()).calls_received
    made += [await setup.pay_out(f"out-{i}", setup.accounts[i % 3]) for i in range(FAIL_MAX, 9)]
    assert {p.status for p in made} == {ppb.PAYMENT_STATUS_QUEUED}
    assert (await setup.stats()).calls_received == seen_when_opened, "while open, no call reaches the network"
    for account in setup.accounts:
        assert (await setup.client.balance(account)) == ("1000.00", "1470.00"), "funds are held, not lost"

    await setup.control.SetFaults(vpb.SetFaultsRequest(faults=faults_pb()))  # recovery

    async def drained() -> bool:
        statuses = [
            (await setup.payments.GetPayment(ppb.GetPaymentRequest(payment_id=p.payment_id))).payment.status for p in made
        ]
        return all(s == ppb.PAYMENT_STATUS_COMPLETED for s in statuses)

    await eventually(drained, 15, "every queued payment completed")
    stats = await setup.stats()
    assert stats.payments_accepted == 9 and stats.duplicate_submissions == 0, "the network saw each payment once"
    for account in setup.accounts:
        assert (await setup.client.balance(account)) == ("970.00", "1470.00"), "each paid exactly once, nothing held"
    clearing = (await setup.client.accounts.GetAccount(apb.GetAccountRequest(account_id="acc_CLEARING_EUR"))).account
    assert clearing.balance.amount == "90.00"
    debits, credits, total = await setup.bank.contexts["account"].resolve(AccountUnits).read(lambda uow: uow.accounts.totals())
    assert debits == credits and total == 0


async def test_timeouts_count_as_failures(setup: Setup) -> None:
    await setup.control.SetFaults(vpb.SetFaultsRequest(faults=faults_pb(timeout_rate="1")))
    breaker = setup.bank.contexts["payment"].resolve(PaymentNetwork).breaker
    made = [await setup.pay_out(f"slow-{i}", setup.accounts[0]) for i in range(FAIL_MAX)]
    assert all(p.status == ppb.PAYMENT_STATUS_QUEUED for p in made), "a timeout leaves the outcome open: queued"
    assert breaker.state == OPEN, "deadline-exceeded calls counted as failures"
    stats = await setup.stats()
    assert stats.faulted_calls == stats.calls_received >= FAIL_MAX


async def test_a_settled_payment_the_ledger_refuses_stops_for_an_operator_and_blocks_nobody(setup: Setup) -> None:
    """The network settled, but the payment's hold was resolved behind its back (here: straight in
    the ledger, as a faulty migration would): the capture is refused for good. The payment stops
    as NEEDS_OPERATOR with the reason, the reconciliation lists it, and the payments queued behind
    it complete."""
    await setup.control.SetFaults(vpb.SetFaultsRequest(faults=faults_pb(outage=True)))
    queued = [await setup.pay_out(f"q-{i}", setup.accounts[i]) for i in range(3)]
    assert {p.status for p in queued} == {ppb.PAYMENT_STATUS_QUEUED}
    units = setup.bank.contexts["account"].resolve(AccountUnits)
    holds = (await setup.client.accounts.ListHolds(apb.ListHoldsRequest(account_id=setup.accounts[0]))).holds
    bad_hold = next(h.hold_id for h in holds if h.owner_context == "payment")
    behind_its_back = IdempotencyKey("behind-its-back", "ReleaseHold", "-", "usr:operator")
    await units.write(lambda uow: movements.release_hold(uow, bad_hold, behind_its_back))
    await setup.control.SetFaults(vpb.SetFaultsRequest(faults=faults_pb()))

    async def all_final() -> bool:
        got = [(await setup.payments.GetPayment(ppb.GetPaymentRequest(payment_id=p.payment_id))).payment for p in queued]
        return all(p.status not in (ppb.PAYMENT_STATUS_QUEUED, ppb.PAYMENT_STATUS_PENDING) for p in got)

    await eventually(all_final, 15, "every queued payment final")
    final = [(await setup.payments.GetPayment(ppb.GetPaymentRequest(payment_id=p.payment_id))).payment for p in queued]
    assert (final[0].status, final[0].failure_reason) == (
        ppb.PAYMENT_STATUS_NEEDS_OPERATOR,
        "SETTLED_CAPTURE_REFUSED_HOLD_ALREADY_RESOLVED",
    )
    assert [p.status for p in final[1:]] == [ppb.PAYMENT_STATUS_COMPLETED] * 2
    report = await setup.payments.ReconcileNetwork(ppb.ReconcileNetworkRequest(currency_code="EUR"))
    assert (report.network_settled, report.matched) == (3, 2)
    assert sorted((d.kind, d.payment_id) for d in report.discrepancies) == [
        ("NEEDS_OPERATOR", queued[0].payment_id),
        ("SETTLED_NOT_BOOKED", queued[0].payment_id),
    ]


async def test_retries_and_duplicates_never_pay_twice(setup: Setup) -> None:
    first = await setup.pay_out("same", setup.accounts[1], "25.00")
    again = await setup.pay_out("same", setup.accounts[1], "25.00")
    assert first == again and first.status == ppb.PAYMENT_STATUS_COMPLETED
    stats = await setup.stats()
    assert stats.payments_accepted == 1 and stats.calls_received == 1, "one submission to the network"
    assert (await setup.client.balance(setup.accounts[1]))[0] == "975.00", "one hold, one capture"


async def test_internal_payment_and_refused_network_payment(setup: Setup) -> None:
    internal = ppb.CreatePaymentRequest(
        request_id="in-1",
        debtor_account_id=setup.accounts[0],
        amount=eur("40.00"),
        internal=ppb.InternalBeneficiary(account_id=setup.accounts[1]),
    )
    done = (await setup.payments.CreatePayment(internal)).payment
    assert done.status == ppb.PAYMENT_STATUS_COMPLETED and done.transfer_id.startswith("trf_")
    assert (await setup.client.balance(setup.accounts[1]))[0] == "1040.00"
    bad_digits = ppb.CreatePaymentRequest(
        request_id="bad-iban",
        debtor_account_id=setup.accounts[2],
        amount=eur("5.00"),
        external=ppb.ExternalBeneficiary(iban="DE89370400440532013001", name="Nobody"),
    )
    assert set(await field_violations(setup.payments.CreatePayment(bad_digits))) == {"external.iban"}, "check digits"
    unreachable = ppb.CreatePaymentRequest(
        request_id="unknown-bank",
        debtor_account_id=setup.accounts[2],
        amount=eur("5.00"),
        external=ppb.ExternalBeneficiary(iban="DE44999999990532013000", name="Nobody"),  # valid digits, no such bank
    )
    failed = (await setup.payments.CreatePayment(unreachable)).payment
    assert failed.status == ppb.PAYMENT_STATUS_FAILED and failed.failure_reason == "INVALID_IBAN"
    assert await setup.client.balance(setup.accounts[2]) == ("1000.00", "1500.00"), "the hold was released"
    broke = ppb.CreatePaymentRequest(
        request_id="broke",
        debtor_account_id=setup.accounts[2],
        amount=eur("1600.00"),
        internal=ppb.InternalBeneficiary(account_id=setup.accounts[0]),
    )
    assert (await setup.payments.CreatePayment(broke)).payment.failure_reason == "INSUFFICIENT_FUNDS"


async def test_fraud_rules_reject_with_the_reason(setup: Setup) -> None:
    account = setup.accounts[0]
    over = await setup.pay_out("big", account, "10000.01")
    assert over.status == ppb.PAYMENT_STATUS_REJECTED and over.failure_reason == "AMOUNT_LIMIT_EXCEEDED"
    for i in range(10):
        assert (await setup.pay_out(f"v-{i}", account, "1.00")).status == ppb.PAYMENT_STATUS_COMPLETED
    eleventh = await setup.pay_out("v-10", account, "1.00")
    assert eleventh.status == ppb.PAYMENT_STATUS_REJECTED and eleventh.failure_reason == "VELOCITY_COUNT_EXCEEDED"
    assert (await setup.client.balance(account))[0] == "990.00", "rejected payments moved nothing"


async def test_bad_input_is_invalid_argument(setup: Setup) -> None:
    bad = ppb.CreatePaymentRequest(debtor_account_id="x", amount=eur("-1"), reference="r" * 141)
    assert set(await field_violations(setup.payments.CreatePayment(bad))) == {
        "request_id",
        "debtor_account_id",
        "beneficiary",
        "reference",
    }, "the contract's rules first"
    bad.MergeFrom(ppb.CreatePaymentRequest(request_id="n", debtor_account_id=setup.accounts[0], reference="r"))
    bad.internal.account_id = setup.accounts[1]
    assert set(await field_violations(setup.payments.CreatePayment(bad))) == {"amount.amount"}, "then the domain's"
    iban = ppb.CreatePaymentRequest(
        request_id="i",
        debtor_account_id=setup.accounts[0],
        amount=eur("1"),
        external=ppb.ExternalBeneficiary(iban="de 89", name=""),
    )
    assert set(await field_violations(setup.payments.CreatePayment(iban))) == {"external.iban", "external.name"}
    assert set(await field_violations(setup.payments.GetPayment(ppb.GetPaymentRequest(payment_id="p")))) == {"payment_id"}
    assert set(
        await field_violations(setup.payments.ListPayments(ppb.ListPaymentsRequest(debtor_account_id="a", page_size=-2)))
    ) == {"debtor_account_id", "page_size"}


async def test_two_instances_share_the_breaker_through_redis(
    tmp_path: Path, network: str, redis_server: RedisServer, postgres: PostgresServer
) -> None:
    """Two replicas of the bank: one database, one Redis, one simulator."""
    shared = {
        "redis_url": redis_server.url,
        "signing_key_path": tmp_path / "k.pem",
        "network_member_key_path": tmp_path / "velocitypay-member-key",
        "database": "postgres",
        "postgres_dsn": postgres.new_database(),
    }
    first = await start_embedded(_settings(tmp_path / "a", network, **shared))
    second = await start_embedded(_settings(tmp_path / "b", network, **shared))
    try:
        async with admin_channel(first.target) as channel, aio.insecure_channel(network) as net:
            client, control = Bank(channel), vgrpc.SimulatorControlServiceStub(net)
            account = (await client.default_account(await client.verified_customer("shared"))).account_id
            await client.deposit(account, "100.00", "shared")
            await control.SetFaults(vpb.SetFaultsRequest(faults=faults_pb(outage=True)))
            payments = pgrpc.PaymentServiceStub(channel)
            for i in range(FAIL_MAX):
                request = ppb.CreatePaymentRequest(
                    request_id=f"sh-{i}",
                    debtor_account_id=account,
                    amount=eur("1.00"),
                    external=ppb.ExternalBeneficiary(iban=GOOD_IBAN, name="Max"),
                )
                await payments.CreatePayment(request)
            other = second.contexts["payment"].resolve(PaymentNetwork).breaker

            async def tripped_there() -> bool:
                return other.state == OPEN

            await eventually(tripped_there, 2, "the second instance sees the circuit open")
            await control.SetFaults(vpb.SetFaultsRequest(faults=faults_pb()))
    finally:
        await second.stop(grace=1)
        await first.stop(grace=1)


async def test_the_simulators_controls_are_for_admins_beside_the_bank_and_open_on_their_own_port(
    setup: Setup, tmp_path: Path
) -> None:
    """Anyone who reached the bank's port could put the payment network into outage."""
    assert (await setup.stats()).calls_received >= 0, "served alone (the fixture's own process): open"
    beside = await start_embedded(Settings(data_dir=tmp_path / "beside", port=0, admin_password=ADMIN_PASSWORD))
    try:
        async with aio.insecure_channel(beside.target) as anonymous, admin_channel(beside.target) as admin:
            outage = vpb.SetFaultsRequest(faults=faults_pb(outage=True))
            await rpc_error(vgrpc.SimulatorControlServiceStub(anonymous).SetFaults(outage), grpc.StatusCode.UNAUTHENTICATED)
            await rpc_error(
                vgrpc.SimulatorControlServiceStub(anonymous).GetStats(vpb.GetStatsRequest()), grpc.StatusCode.UNAUTHENTICATED
            )
            client = Bank(admin)
            customer = await client.verified_customer("control")
            await igrpc.IdentityServiceStub(admin).CreateUser(
                ipb.CreateUserRequest(
                    request_id="control-user",
                    username="carla",
                    password="password-of-carla",
                    roles=[ipb.ROLE_CUSTOMER],
                    customer_id=customer,
                )
            )
            async with bearer_channel(beside.target, await issue_token(beside.target, "carla", "password-of-carla")) as carla:
                await rpc_error(vgrpc.SimulatorControlServiceStub(carla).SetFaults(outage), grpc.StatusCode.PERMISSION_DENIED)
            await vgrpc.SimulatorControlServiceStub(admin).SetFaults(vpb.SetFaultsRequest(faults=faults_pb()))
    finally:
        await beside.stop(grace=1)


async def test_the_network_serves_its_member_only_beside_the_bank_and_on_its_own_port(
    setup: Setup, network: str, tmp_path: Path
) -> None:
    """Its settlement report names every external payment: no stranger may read it, or submit."""
    beside = await start_embedded(Settings(data_dir=tmp_path / "beside", port=0, admin_password=ADMIN_PASSWORD))
    submit = vpb.SubmitPaymentRequest(payment_id="stranger-1", beneficiary_iban=GOOD_IBAN, currency_code="EUR", amount="1.00")
    placements = ((network, tmp_path), (beside.target, tmp_path / "beside"))
    try:
        bank_token = (("authorization", f"Bearer {await issue_token(beside.target)}"),)
        for target, bank_data in placements:
            async with aio.insecure_channel(target) as channel:
                stub = vgrpc.PaymentNetworkServiceStub(channel)
                for metadata in ((), ((MEMBER_KEY_HEADER, "0" * 64),), bank_token):
                    for call in (
                        stub.ListSettlements(vpb.ListSettlementsRequest(), metadata=metadata),
                        stub.SubmitPayment(submit, metadata=metadata),
                        stub.GetPaymentStatus(vpb.GetPaymentStatusRequest(payment_id="stranger-1"), metadata=metadata),
                    ):
                        assert (await error_reason(call, grpc.StatusCode.UNAUTHENTICATED)).reason == "MEMBER_KEY_INVALID"
                member = ((MEMBER_KEY_HEADER, (bank_data / "velocitypay-member-key").read_text().strip()),)
                assert list((await stub.ListSettlements(vpb.ListSettlementsRequest(), metadata=member)).settlements) == []
    finally:
        await beside.stop(grace=1)
    assert (await setup.stats()).payments_accepted == 0, "nothing a stranger sent was settled"
