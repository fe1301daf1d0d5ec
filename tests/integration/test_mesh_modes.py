"""One codebase, three deployments: the same story passes embedded (contexts call each other over
the server's socket), colocated (in-process calls) and distributed (one process per context, a
replicated context, Redis and PostgreSQL started by the mesh itself); and a replica killed under
load does not fail the calls."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import redis
from cryptography import x509
from grpc import StatusCode, aio
from ogpgy_client import BankClient

from common.config import Settings
from common.events.redis_streams import stream_of
from common.grpc.channels import DEFAULT_CHANNEL_OPTIONS
from common.grpc.client import bearer_channel, bearer_interceptors, open_channel
from common.grpc.tls import channel_credentials
from common.security.pki import load
from common.security.tokens import TokenSettings, issue_service, load_or_create_private_key
from mesh.cli import main as cli_main
from mesh.config import MeshConfig
from mesh.distributed import Mesh
from mesh.embedded import CONTEXT_NAMES, start_embedded
from mesh.status import mesh_status, scrape
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1 import account_service_pb2_grpc as agrpc
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.customer.v1 import customer_service_pb2_grpc as cgrpc
from ogpgy.customer.v1.events_pb2 import CustomerOnboarded
from ogpgy.identity.v1 import identity_service_pb2 as idpb
from ogpgy.identity.v1 import identity_service_pb2_grpc as idgrpc
from ogpgy.interest.v1 import interest_service_pb2 as ipb
from ogpgy.interest.v1 import interest_service_pb2_grpc as igrpc
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc
from ogpgy.notification.v1 import notification_service_pb2 as npb
from ogpgy.notification.v1 import notification_service_pb2_grpc as ngrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from ogpgy.type.v1 import date_pb2
from tests.bank_helpers import Bank, eur, eventually, fresh_document
from tests.conftest import ADMIN_PASSWORD, document, issue_token, onboarding
from tests.grpc_assert import error_reason, rpc_error
from tests.local_mesh import loopback_mesh

CONTEXTS = ("identity", "customer", "account", "payment", "lending", "interest", "notification")


ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def mesh_client(
    targets: Mapping[str, str], tls: grpc.ChannelCredentials | None = None
) -> AsyncIterator[dict[str, aio.Channel]]:
    """A channel per context, as the first admin (over the mesh's mutual TLS with `tls`);
    replicas are balanced round robin."""
    token = await issue_token(targets["identity"], tls=tls)
    channels: dict[str, aio.Channel] = {}
    interceptors = bearer_interceptors(token)
    opened = {t: open_channel(t, tls, options=DEFAULT_CHANNEL_OPTIONS, interceptors=interceptors) for t in set(targets.values())}
    try:
        channels = {context: opened[target] for context, target in targets.items()}
        yield channels
    finally:
        for channel in opened.values():
            await channel.close()


def mesh_bank(ch: Mapping[str, aio.Channel]) -> Bank:
    bank = Bank(ch["account"])
    bank.customers = cgrpc.CustomerServiceStub(ch["customer"])
    return bank


def _today() -> date_pb2.Date:
    """The savings account was opened today: today is the first day it earns interest for."""
    today = datetime.now(UTC).date()
    return date_pb2.Date(year=today.year, month=today.month, day=today.day)


async def the_story(
    targets: Mapping[str, str], tls: grpc.ChannelCredentials | None = None, *, interest: bool = True, again: str = ""
) -> None:
    """Onboard -> default account -> deposit -> pay -> loan -> interest (a date runs once: left out
    where the bank ran today's already), each context at its target; `again` names a second
    telling in the same bank (its people and request ids its own)."""
    async with mesh_client(targets, tls) as ch:
        bank = mesh_bank(ch)
        alice, bob = await bank.verified_customer(f"{again}alice"), await bank.verified_customer(f"{again}bob")
        alice_account = (await bank.default_account(alice, within=30)).account_id
        bob_account = (await bank.default_account(bob, within=30)).account_id
        await bank.deposit(alice_account, "500.00", f"{again}alice")
        paid = await pgrpc.PaymentServiceStub(ch["payment"]).CreatePayment(
            ppb.CreatePaymentRequest(
                request_id=f"{again}pay-1",
                debtor_account_id=alice_account,
                internal=ppb.InternalBeneficiary(account_id=bob_account),
                amount=eur("120.00"),
            )
        )
        assert paid.payment.status == ppb.PAYMENT_STATUS_COMPLETED
        loans = lgrpc.LendingServiceStub(ch["lending"])
        applied = await loans.ApplyForLoan(
            lpb.ApplyForLoanRequest(
                request_id=f"{again}apply-1",
                customer_id=alice,
                account_id=alice_account,
                principal=eur("2500.00"),
                term_months=24,
            )
        )
        await loans.ApproveLoan(
            lpb.ApproveLoanRequest(request_id=f"{again}approve-1", loan_id=applied.loan.loan_id, annual_interest_rate="0.059")
        )
        loan = (
            await loans.DisburseLoan(lpb.DisburseLoanRequest(request_id=f"{again}disburse-1", loan_id=applied.loan.loan_id))
        ).loan
        assert loan.status == lpb.LOAN_STATUS_DISBURSED and loan.saga_status == lpb.SAGA_STATUS_COMPLETED
        savings = await bank.open(alice, f"{again}savings")
        await bank.deposit(savings, "10000.00", f"{again}savings")
        if interest:
            runs = [
                a.run
                async for a in igrpc.InterestServiceStub(ch["interest"]).RunDailyInterest(
                    ipb.RunDailyInterestRequest(request_id="interest-1", business_date=_today())
                )
            ]
            assert runs[-1].status == ipb.INTEREST_RUN_STATUS_COMPLETED
        assert (await bank.balance(alice_account))[0] == "2880.00"  # 500 - 120 + 2500
        assert (await bank.balance(bob_account))[0] == "120.00"
        assert (await bank.balance(savings))[0] == ("10000.41" if interest else "10000.00")
        notifications = ngrpc.NotificationServiceStub(ch["notification"])

        async def told() -> set[tuple[str, int]]:
            listed = await notifications.ListNotifications(npb.ListNotificationsRequest(customer_id=alice))
            return {(n.kind, n.status) for n in listed.notifications}

        sent = {(kind, npb.DELIVERY_STATUS_SENT) for kind in ("WELCOME", "PAYMENT_COMPLETED", "LOAN_DISBURSED")}
        await eventually(lambda: _includes(told, sent), what="Alice told by mail of her welcome, her payment and her loan")


async def _includes(found: Callable[[], Awaitable[set[tuple[str, int]]]], expected: set[tuple[str, int]]) -> bool:
    return expected <= await found()


@pytest.mark.parametrize("colocated", [False, True], ids=["embedded-loopback", "colocated"])
async def test_the_story_in_one_process(tmp_path: Path, colocated: bool) -> None:
    bank = await start_embedded(Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD, colocated_calls=colocated))
    try:
        await the_story({context: bank.target for context in CONTEXTS})
    finally:
        await bank.stop()


@dataclass
class RunningMesh:
    mesh: Mesh
    targets: dict[str, str]
    config: MeshConfig


@pytest.fixture(scope="module")
def distributed() -> Iterator[RunningMesh]:
    mesh = loopback_mesh("ogpgy-mesh-", replicas={"customer": 2}, metrics=True)  # local Redis and PostgreSQL
    mesh.start()
    try:
        yield RunningMesh(mesh, {c: mesh.config.target(c) for c in CONTEXTS}, mesh.config)
    finally:
        mesh.stop()


async def test_the_story_distributed(distributed: RunningMesh) -> None:
    assert len(distributed.mesh.replicas) == len(CONTEXT_NAMES) + 1, "a process per context, two customer replicas"
    await the_story(distributed.targets, distributed.mesh.tls)


async def test_each_event_is_published_once_though_its_context_has_two_replicas(distributed: RunningMesh) -> None:
    """Both customer replicas run an outbox relay over one schema; only the holder of the outbox
    lease publishes, so the stream holds each event once."""
    assert distributed.mesh.redis is not None
    client = redis.Redis.from_url(distributed.mesh.redis.url)
    stream = stream_of(CustomerOnboarded.DESCRIPTOR.full_name)
    try:
        before = client.xlen(stream)
        async with mesh_client(distributed.targets, distributed.mesh.tls) as ch:
            bank = mesh_bank(ch)
            await asyncio.gather(*(bank.verified_customer(f"once-{i}") for i in range(20)))
        deadline = time.monotonic() + 10
        while True:  # the replica that wrote an event may not be the one that relays it: allow a poll
            events = [fields[b"event_id"] for _, fields in client.xrange(stream)]
            if len(set(events)) >= before + 20 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    finally:
        client.close()
    assert len(set(events)) == before + 20 and len(events) == len(set(events)), "every event once"


async def test_killing_a_replica_under_load_fails_no_call(distributed: RunningMesh) -> None:
    async with mesh_client(distributed.targets, distributed.mesh.tls) as ch:
        customers = cgrpc.CustomerServiceStub(ch["customer"])
        customer = await mesh_bank(ch).verified_customer("load")
        results: list[bool] = []
        stop = asyncio.Event()

        async def reader() -> None:
            while not stop.is_set():
                try:
                    await customers.GetCustomer(cpb.GetCustomerRequest(customer_id=customer), timeout=5)
                    results.append(True)
                except aio.AioRpcError as error:
                    results.append(False)
                    print("failed:", error.code(), error.details())

        workers = [asyncio.create_task(reader()) for _ in range(8)]
        await asyncio.sleep(1.0)
        before = len(results)
        victim = distributed.mesh.replica("customer", 1)
        victim.proc.kill()
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.gather(*workers)
    assert before > 0 and len(results) > before, "calls went on after the kill"
    assert all(results), f"{results.count(False)} of {len(results)} calls failed"
    for replica in (0, 1):
        log = distributed.mesh.replica("customer", replica).log_path.read_text(errors="replace")
        assert "CustomerService/GetCustomer" in log, f"round robin sent calls to customer[{replica}] too"


def _contexts_logging(mesh: Mesh, trace_id: str) -> set[str]:
    """The processes whose JSON log lines carry `trace_id`."""
    seen = set()
    for replica in mesh.replicas:
        for line in replica.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and json.loads(line).get("trace_id") == trace_id:
                seen.add(replica.process)
    return seen


async def test_a_trace_started_by_the_first_call_is_in_the_logs_of_every_context_on_its_path(distributed: RunningMesh) -> None:
    trace_id = secrets.token_hex(16)
    traced = (("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"),)
    async with mesh_client(distributed.targets, distributed.mesh.tls) as ch:
        bank = mesh_bank(ch)
        payer = await bank.verified_customer("trace-payer")
        payer_account = (await bank.default_account(payer, within=30)).account_id
        await bank.deposit(payer_account, "50.00", "trace")
        onboarded = await bank.customers.OnboardCustomer(
            onboarding("trace-onboard", document=document(fresh_document())), metadata=traced
        )
        payee_account = (await bank.default_account(onboarded.customer.customer_id, within=30)).account_id  # via the event
        await pgrpc.PaymentServiceStub(ch["payment"]).CreatePayment(
            ppb.CreatePaymentRequest(
                request_id="trace-pay",
                debtor_account_id=payer_account,
                internal=ppb.InternalBeneficiary(account_id=payee_account),
                amount=eur("5.00"),
            ),
            metadata=traced,
        )
    deadline = time.monotonic() + 10
    expected = {"customer", "account", "payment", "identity", "notification"}
    while (seen := _contexts_logging(distributed.mesh, trace_id)) != expected and time.monotonic() < deadline:  # noqa: ASYNC110 - log files
        await asyncio.sleep(0.2)  # log lines are flushed as they are written; the event may still be in flight
    assert seen == expected, (
        f"{sorted(seen)}: customer (RPC), account (event, then RPC from payment), payment (RPC), identity (their audit"
        " records), notification (the welcome and the payment's message)"
    )


async def test_status_shows_health_breakers_lags_and_metrics(distributed: RunningMesh) -> None:
    """Runs last: the replica killed above is reported DOWN, everything else SERVING."""
    rows = {row.process: row for row in mesh_status(distributed.config)}
    assert rows["customer[1]"].health == "DOWN"
    assert all(row.health == "SERVING" for name, row in rows.items() if name != "customer[1]")
    assert rows["payment[0]"].breakers == "velocitypay=closed"
    assert rows["payment[0]"].outbox_lag == "payment=0" and rows["account[0]"].consumer_lag == "account=0"
    customer = scrape(distributed.config.process("customer").metrics[0])
    handled = {(s["grpc_method"], s["grpc_code"]) for s, _ in customer["grpc_server_handled_total"]}
    assert ("GetCustomer", "OK") in handled and ("OnboardCustomer", "OK") in handled
    assert any(s["outcome"] == "l1_hit" and v > 0 for s, v in customer["ogpgy_cache_lookups_total"]), (
        "GetCustomer under load hit L1"
    )
    assert customer["grpc_server_handling_seconds_count"]


async def test_the_launchers_supervisor_starts_a_replica_that_died_again_and_counts_it(distributed: RunningMesh) -> None:
    """What `ogpgy up --distributed` runs: a replica that dies (here the customer replica killed
    above, and interest killed now) is started again and SERVING; `ogpgy status` counts it."""
    mesh = distributed.mesh
    mesh.supervise(every=0.2)
    victim = mesh.replica("interest")
    victim.proc.kill()

    def revived() -> bool:
        rows = {row.process: row for row in mesh_status(distributed.config)}
        return all(rows[name].health == "SERVING" and rows[name].restarts == "1" for name in ("interest[0]", "customer[1]"))

    deadline = time.monotonic() + 60
    while not await asyncio.to_thread(revived):
        assert time.monotonic() < deadline, "the dead replicas were not started again within 60 s"
        await asyncio.sleep(0.5)
    assert mesh.replica("interest").proc.pid != victim.proc.pid


async def test_a_context_is_who_its_certificate_says_and_calls_only_what_it_imported(distributed: RunningMesh) -> None:
    pki = distributed.config.data_dir / "pki"
    ca = (pki / "ca.pem").read_bytes()
    place_hold = apb.PlaceHoldRequest(
        request_id="cert-1", debit_account_id="acc_TREASURY_EUR", credit_account_id="acc_CASH_EUR", amount=eur("1.00")
    )
    # The interest context imported AccrueInterest, not PlaceHold: its own certificate cannot place a hold.
    as_interest = channel_credentials(ca, load(pki / "contexts", "interest"))
    async with open_channel(distributed.targets["account"], as_interest) as channel:
        info = await error_reason(
            agrpc.AccountServiceStub(channel).PlaceHold(place_hold, timeout=5), StatusCode.PERMISSION_DENIED
        )
    assert info.reason == "RPC_NOT_IMPORTED" and info.metadata["context"] == "interest"
    # The token revocations every process applies are the platform's: any context may ask for them.
    async with open_channel(distributed.targets["identity"], as_interest) as channel:
        await idgrpc.IdentityServiceStub(channel).GetTokenRevocations(idpb.GetTokenRevocationsRequest(), timeout=5)
    # A service token, even one signed with the real key, is no identity here: certificates are.
    key = load_or_create_private_key(distributed.config.data_dir / "identity-signing-key.pem")
    forged, _ = issue_service(key, TokenSettings(Settings().jwt_audience, Settings().jwt_issuer), "payment")
    async with bearer_channel(distributed.targets["account"], forged, distributed.mesh.tls) as channel:
        info = await error_reason(agrpc.AccountServiceStub(channel).PlaceHold(place_hold, timeout=5), StatusCode.UNAUTHENTICATED)
    assert info.reason == "SERVICE_TOKEN_REFUSED"
    # And without a certificate of the bank's CA there is no connection at all.
    async with open_channel(distributed.targets["account"], channel_credentials(ca)) as channel:
        await rpc_error(agrpc.AccountServiceStub(channel).PlaceHold(place_hold, timeout=5), grpc.StatusCode.UNAVAILABLE)


REVOCATION_BOUND = Settings().revocation_refresh_seconds + 1.0  # the refresh period, and a call to identity


async def test_a_disabled_users_token_is_refused_by_every_process_within_the_bound(distributed: RunningMesh) -> None:
    """The README's bound: a user disabled at identity is refused by every other process within
    revocation_refresh_seconds (each asks identity that often), plus the time of that call."""
    async with mesh_client(distributed.targets, distributed.mesh.tls) as ch:
        bank = mesh_bank(ch)
        customer_id = await bank.verified_customer("revoked")
        account_id = (await bank.default_account(customer_id, within=30)).account_id
        identity = idgrpc.IdentityServiceStub(ch["identity"])
        user = await identity.CreateUser(
            idpb.CreateUserRequest(
                request_id="revoked-user",
                username="revoked",
                password="revoked users password",
                roles=[idpb.ROLE_CUSTOMER],
                customer_id=customer_id,
            )
        )
        token = await issue_token(distributed.targets["identity"], "revoked", "revoked users password", tls=distributed.mesh.tls)
        calls = {
            "customer": lambda channel: cgrpc.CustomerServiceStub(channel).GetCustomer(
                cpb.GetCustomerRequest(customer_id=customer_id), timeout=5
            ),
            "account": lambda channel: agrpc.AccountServiceStub(channel).GetAccount(
                apb.GetAccountRequest(account_id=account_id), timeout=5
            ),
        }
        channels = {c: bearer_channel(distributed.targets[c], token, distributed.mesh.tls) for c in calls}
        try:
            for context, call in calls.items():
                await call(channels[context])  # the live token works everywhere
            await identity.DisableUser(idpb.DisableUserRequest(request_id="disable-revoked", user_id=user.user.user_id))
            disabled_at = time.monotonic()
            refused_after = {
                context: await _refused_within(call, channels[context], disabled_at) for context, call in calls.items()
            }
        finally:
            for channel in channels.values():
                await channel.close()
    assert all(after <= REVOCATION_BOUND for after in refused_after.values()), refused_after


async def _refused_within(call: Callable[[aio.Channel], Any], channel: aio.Channel, since: float) -> float:
    """Seconds from `since` until the call is refused with TOKEN_REVOKED (gives up at three bounds)."""
    while time.monotonic() - since < 3 * REVOCATION_BOUND:
        try:
            await call(channel)
        except aio.AioRpcError as refused:
            assert refused.code() == StatusCode.UNAUTHENTICATED and "revoked" in (refused.details() or ""), refused
            return time.monotonic() - since
        await asyncio.sleep(0.05)
    raise AssertionError("the disabled user's token was never refused")


async def test_a_rotated_signing_key_reaches_every_process_before_it_signs_and_old_tokens_stay_valid(
    distributed: RunningMesh,
) -> None:
    """`ogpgy keys rotate` while the mesh runs: every process learns the new key from GetSigningKeys
    within its refresh period, the key signs once published for key_publish_seconds, and tokens
    the old key signed are still accepted everywhere. Nothing restarts."""
    tls, targets = distributed.mesh.tls, distributed.targets
    before = await issue_token(targets["identity"], tls=tls)
    assert cli_main(["keys", "rotate", "--data-dir", str(distributed.config.data_dir)]) == 0
    await asyncio.sleep(Settings().key_publish_seconds + Settings().revocation_refresh_seconds + 0.5)
    after = await issue_token(targets["identity"], tls=tls)
    assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
    for token in (before, after):
        for context in ("account", "payment", "lending"):
            async with bearer_channel(targets[context], token, tls) as channel:
                request = apb.GetInternalAccountRequest(internal_account=apb.INTERNAL_ACCOUNT_CASH, currency_code="EUR")
                if context == "account":
                    assert (await agrpc.AccountServiceStub(channel).GetInternalAccount(request, timeout=5)).account_id
                else:  # a token check is all this asks of the process: an unknown id is the use case's answer
                    await _checked_token(context, channel)


async def _checked_token(context: str, channel: aio.Channel) -> None:
    """A call the process authenticates and then refuses for the unknown id (not for the token)."""
    if context == "payment":
        call = pgrpc.PaymentServiceStub(channel).GetPayment(ppb.GetPaymentRequest(payment_id="pay_" + "0" * 26), timeout=5)
    else:
        call = lgrpc.LendingServiceStub(channel).GetLoan(lpb.GetLoanRequest(loan_id="lon_" + "0" * 26), timeout=5)
    await rpc_error(call, StatusCode.NOT_FOUND)


def _token_command(mesh: RunningMesh, *tls: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mesh.cli", "token", "--target", mesh.targets["identity"]]
    env = {**os.environ, "OGPGY_PASSWORD": ADMIN_PASSWORD}  # never on the command line
    return subprocess.run([*command, *tls], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)


def test_ogpgy_token_reaches_the_mesh_with_the_operators_certificate_only(distributed: RunningMesh) -> None:
    pki = distributed.config.data_dir / "pki"
    ca, operator = str(pki / "ca.pem"), str(pki / "clients" / "operator.pem")
    with_certificate = _token_command(distributed, "--cacert", ca, "--cert", operator)
    assert with_certificate.returncode == 0, with_certificate.stderr
    assert with_certificate.stdout.strip().count(".") == 2  # a JWT
    without = _token_command(distributed, "--cacert", ca)
    assert without.returncode != 0 and "UNAVAILABLE" in without.stderr


def _served_serial(address: str, pki: Path) -> int:
    """The serial number of the certificate a process shows a new connection (as the operator)."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.load_cert_chain(pki / "clients" / "operator.pem", pki / "clients" / "operator.key")
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_renewed_certificates_serve_new_connections_under_load_without_a_failed_call(distributed: RunningMesh) -> None:
    pki = distributed.config.data_dir / "pki"
    account = distributed.config.process("account").addresses[0]
    before = await asyncio.to_thread(_served_serial, account, pki)
    failures: list[str] = []
    async with mesh_client(distributed.targets, distributed.mesh.tls) as ch:
        bank = mesh_bank(ch)
        customer = await bank.verified_customer("renewal")
        stop = asyncio.Event()

        async def load() -> int:
            calls = 0
            while not stop.is_set():
                try:  # on the open connections, and on a new one each time
                    await bank.accounts.ListAccounts(apb.ListAccountsRequest(customer_id=customer), timeout=5)
                    async with mesh_client(
                        {"account": distributed.targets["account"], "identity": distributed.targets["identity"]},
                        distributed.mesh.tls,
                    ) as fresh:
                        await agrpc.AccountServiceStub(fresh["account"]).ListAccounts(
                            apb.ListAccountsRequest(customer_id=customer), timeout=5
                        )
                    calls += 2
                except grpc.RpcError as failed:
                    failures.append(f"{failed.code()}: {failed.details()}")
            return calls

        running = asyncio.ensure_future(load())
        await asyncio.sleep(0.5)
        await asyncio.to_thread(distributed.mesh.renew_certificates)
        await asyncio.sleep(1.0)
        stop.set()
        calls = await running
    after = await asyncio.to_thread(_served_serial, account, pki)
    assert after != before, "a new connection was shown the renewed certificate"
    assert calls > 0 and not failures, failures[:3]


async def test_the_story_on_a_plaintext_loopback_mesh_kept_for_comparison() -> None:
    mesh = loopback_mesh("ogpgy-plain-", mutual_tls=False)
    mesh.start()
    try:
        assert mesh.tls is None and not (mesh.config.data_dir / "pki").exists()
        await the_story({c: mesh.config.target(c) for c in CONTEXTS})
    finally:
        mesh.stop()


async def test_clients_find_the_mesh_from_the_environment_alone(distributed: RunningMesh) -> None:
    """One shell set up for the mesh (its target, CA and the operator's certificate in OGPGY_*)
    serves `ogpgy token` with no option and BankClient.from_env with no argument."""
    pki = distributed.config.data_dir / "pki"
    environ = {
        "OGPGY_TARGET": distributed.targets["identity"],
        "OGPGY_CA_FILE": str(pki / "ca.pem"),
        "OGPGY_CERT_FILE": str(pki / "clients" / "operator.pem"),
        "OGPGY_PASSWORD": ADMIN_PASSWORD,
    }
    command = [sys.executable, "-m", "mesh.cli", "token"]
    env = {**os.environ, **environ}
    token = await asyncio.to_thread(subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert token.returncode == 0 and token.stdout.strip().count(".") == 2, token.stderr
    async with BankClient.from_env(environ) as bank:
        users = await bank.identity.ListUsers(idpb.ListUsersRequest(page_size=5), timeout=10)
    assert "admin" in [u.username for u in users.users]
    without_certificate = {k: v for k, v in environ.items() if k != "OGPGY_CERT_FILE"}
    async with BankClient.from_env(without_certificate) as stranger:
        with pytest.raises(aio.AioRpcError) as refused:
            await stranger.identity.ListUsers(idpb.ListUsersRequest(page_size=5), timeout=10)
    assert refused.value.code() is StatusCode.UNAVAILABLE, "no client certificate, no connection"
