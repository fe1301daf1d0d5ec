"""The payment context's side of its contracts: the account context behind the Accounts port,
VelocityPay behind the PaymentNetwork port (a circuit breaker shared through Redis, the member
key on every call), and its events as the messages it publishes."""

from __future__ import annotations

import grpc

from common.config import Settings
from common.di import BaseComponent, og_component
from common.grpc.status import no_answer
from common.money import Money
from common.resilience.breaker import BreakerPolicy, CircuitBreaker, CircuitOpenError
from common.resilience.shared import SharedBreakerState
from common.security.secrets import shared_key
from kernel.accounts import AccountCalls
from kernel.convert import money_of, money_pb
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1.account_service_pb2_grpc import AccountServiceStub
from services.payment.domain import NO_REMITTANCE, Payment, Remittance
from services.payment.ports import (
    Accounts,
    FoundHold,
    HoldOrder,
    NetworkAnswer,
    NetworkRefused,
    NetworkUnavailable,
    PaymentNetwork,
)
from services.payment.reconciliation import BookedTransfer, NetworkSettlement
from velocitypay.v1 import network_pb2 as vpb
from velocitypay.v1.network_pb2_grpc import PaymentNetworkServiceStub

MEMBER_KEY_HEADER = "x-velocitypay-member-key"  # the network's contract (velocitypay/v1/network.proto)


def _found(hold: apb.Hold) -> FoundHold:
    return FoundHold(hold.hold_id, hold.status == apb.HOLD_STATUS_RELEASED, hold.transfer_id)


@og_component()
class AccountsClient(BaseComponent, Accounts):
    """The accounts, as the account context's AccountService answers."""

    def __init__(self, accounts: AccountServiceStub) -> None:
        self._calls = AccountCalls(accounts)

    async def _check(self, account_id: str, access: apb.AccountAccess.ValueType) -> None:
        await self._calls.check_access(account_id, access)

    async def require_debit(self, account_id: str) -> None:
        await self._check(account_id, apb.ACCOUNT_ACCESS_DEBIT)

    async def require_read(self, account_id: str) -> None:
        await self._check(account_id, apb.ACCOUNT_ACCESS_READ)

    async def debit_currency(self, account_id: str) -> str:
        return await self._calls.check_access(account_id, apb.ACCOUNT_ACCESS_DEBIT)

    async def require_payee(self, account_id: str) -> None:
        await self._check(account_id, apb.ACCOUNT_ACCESS_CREDIT)

    async def clearing_account(self, currency: str) -> str:
        return await self._calls.internal_account(apb.INTERNAL_ACCOUNT_CLEARING, currency)

    async def place_hold(
        self,
        request_id: str,
        debtor: str,
        creditor: str,
        amount: Money,
        description: str,
        *,
        capture: bool,
        remittance: Remittance = NO_REMITTANCE,
    ) -> FoundHold:
        r = remittance
        held = await self._calls.place_hold(
            request_id,
            debtor,
            creditor,
            amount,
            description,
            capture=capture,
            remittance=(r.payee_name, r.payee_iban, r.reference),
        )
        return _found(held)

    async def place_holds(self, orders: list[HoldOrder]) -> list[FoundHold]:
        requests = [
            apb.PlaceHoldRequest(
                request_id=o.request_id,
                debit_account_id=o.debtor,
                credit_account_id=o.creditor,
                amount=money_pb(o.amount),
                description=o.description,
                counterparty_name=o.remittance.payee_name,
                counterparty_iban=o.remittance.payee_iban,
                reference=o.remittance.reference,
            )
            for o in orders
        ]
        return [_found(hold) for hold in await self._calls.place_holds(requests)]

    async def lookup_hold(self, request_id: str) -> FoundHold:
        return _found(await self._calls.lookup_hold(request_id))

    async def capture_hold(self, request_id: str, hold_id: str) -> str:
        return await self._calls.capture_hold(request_id, hold_id)

    async def release_hold(self, request_id: str, hold_id: str) -> None:
        await self._calls.release_hold(request_id, hold_id)

    async def credits_of(self, account_id: str) -> list[BookedTransfer]:
        found: list[BookedTransfer] = []
        token = ""
        while True:
            page = await self._calls.entries(account_id, token)
            found.extend(
                BookedTransfer(e.transfer_id, money_of(e.amount)) for e in page.entries if not e.amount.amount.startswith("-")
            )
            token = page.next_page_token
            if not token:
                return found


@og_component()
class VelocityPayGateway(BaseComponent, PaymentNetwork):
    """The network behind a circuit breaker, whose state all instances share through Redis. The
    network knows the bank by its member key, which every call carries."""

    def __init__(self, network: PaymentNetworkServiceStub, settings: Settings) -> None:
        self._network = network
        self._member_key_path = settings.member_key_path()
        self._member: tuple[tuple[str, str], ...] = ()
        self._timeout = settings.network_timeout_seconds
        self.breaker = CircuitBreaker(
            "velocitypay", BreakerPolicy(fail_max=settings.breaker_fail_max, reset_timeout=settings.breaker_reset_seconds)
        )
        self._shared = SharedBreakerState(self.breaker, settings.redis_url) if settings.redis_url else None

    async def initialize(self) -> None:
        self._member = ((MEMBER_KEY_HEADER, shared_key(self._member_key_path)),)
        if self._shared is not None:
            await self._shared.start()

    async def shutdown(self) -> None:
        if self._shared is not None:
            await self._shared.stop()

    def accepts_calls(self) -> bool:
        return self.breaker.allows_calls()

    async def submit(self, payment: Payment) -> NetworkAnswer:
        request = vpb.SubmitPaymentRequest(
            payment_id=payment.payment_id,
            beneficiary_iban=payment.beneficiary.iban,
            beneficiary_name=payment.beneficiary.name,
            currency_code=payment.amount.currency,
            amount=payment.amount.amount,
            reference=payment.reference,
        )
        try:
            answer = await self.breaker.call(self._network.SubmitPayment, request, timeout=self._timeout, metadata=self._member)
        except CircuitOpenError as open_circuit:
            raise NetworkUnavailable("the circuit to the network is open") from open_circuit
        except grpc.aio.AioRpcError as err:
            if self.breaker.counts_as_failure(err):
                raise NetworkUnavailable(err.code().name) from err
            raise NetworkRefused(err.code().name) from err
        return NetworkAnswer(answer.status == vpb.NETWORK_PAYMENT_STATUS_SETTLED, answer.reject_reason)

    async def settlements(self) -> list[NetworkSettlement]:
        """The whole report, page by page; not through the breaker: an operator's read should say
        that the network is down, not that our circuit is open."""
        found: list[NetworkSettlement] = []
        token = ""
        while True:
            try:
                page = await self._network.ListSettlements(
                    vpb.ListSettlementsRequest(page_size=1000, page_token=token), timeout=self._timeout * 5, metadata=self._member
                )
            except grpc.aio.AioRpcError as err:
                raise no_answer(err, "NETWORK_UNAVAILABLE", "cannot read the network's settlements") from err
            found.extend(
                NetworkSettlement(
                    s.payment_id, s.status == vpb.NETWORK_PAYMENT_STATUS_SETTLED, Money.parse(s.currency_code, s.amount)
                )
                for s in page.settlements
            )
            token = page.next_page_token
            if not token:
                return found
