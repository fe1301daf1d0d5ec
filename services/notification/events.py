"""Events the notification context takes in: each one that concerns a customer becomes at most
one notification (its event id is the key: a redelivered event stores and sends nothing more)."""

from __future__ import annotations

from common.di import ContextInfo, og_component
from common.events.bus import EventBus
from common.events.envelope import Envelope
from common.events.incoming import Incoming, Subscriber
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.customer.v1.events_pb2 import CustomerOnboarded
from ogpgy.lending.v1.events_pb2 import InstallmentOverdue, LoanDisbursed, LoanDisbursementFailed, LoanPaidOff, LoanRepaid
from ogpgy.payment.v1.events_pb2 import PaymentCompleted, PaymentFailed, PaymentQueued
from ogpgy.type.v1.money_pb2 import Money
from services.notification.domain import Kind
from services.notification.service import NotificationUseCases

INCOMING = Incoming()


def _money(amount: Money) -> dict[str, str]:
    return {"amount": amount.amount, "currency": amount.currency_code}


@og_component()
class NotificationEventsHandler(Subscriber):
    incoming = INCOMING

    def __init__(self, bus: EventBus, service: NotificationUseCases, context: ContextInfo) -> None:
        super().__init__(bus, context)
        self._service = service

    @INCOMING.on(CustomerOnboarded)
    async def onboarded(self, event: CustomerOnboarded, envelope: Envelope) -> None:
        if event.kyc_status == cpb.KYC_STATUS_REJECTED:
            return  # an applicant turned away is no customer to welcome
        verified = "yes" if event.kyc_status == cpb.KYC_STATUS_VERIFIED else ""
        await self._service.notify(event.customer_id, Kind.WELCOME, {"verified": verified}, envelope.event_id)

    @INCOMING.on(PaymentCompleted)
    async def payment_completed(self, event: PaymentCompleted, envelope: Envelope) -> None:
        values = {"payment_id": event.payment_id, **_money(event.amount)}
        await self._service.notify_account_owner(event.debtor_account_id, Kind.PAYMENT_COMPLETED, values, envelope.event_id)

    @INCOMING.on(PaymentFailed)
    async def payment_failed(self, event: PaymentFailed, envelope: Envelope) -> None:
        values = {"payment_id": event.payment_id, "reason": event.reason, **_money(event.amount)}
        await self._service.notify_account_owner(event.debtor_account_id, Kind.PAYMENT_FAILED, values, envelope.event_id)

    @INCOMING.on(PaymentQueued)
    async def payment_queued(self, event: PaymentQueued, envelope: Envelope) -> None:
        values = {"payment_id": event.payment_id, **_money(event.amount)}
        await self._service.notify_account_owner(event.debtor_account_id, Kind.PAYMENT_QUEUED, values, envelope.event_id)

    @INCOMING.on(LoanDisbursed)
    async def loan_disbursed(self, event: LoanDisbursed, envelope: Envelope) -> None:
        values = {"loan_id": event.loan_id, "account_id": event.account_id, **_money(event.principal)}
        await self._service.notify(event.customer_id, Kind.LOAN_DISBURSED, values, envelope.event_id)

    @INCOMING.on(LoanDisbursementFailed)
    async def loan_disbursement_failed(self, event: LoanDisbursementFailed, envelope: Envelope) -> None:
        values = {"loan_id": event.loan_id, "reason": event.reason}
        await self._service.notify(event.customer_id, Kind.LOAN_DISBURSEMENT_FAILED, values, envelope.event_id)

    @INCOMING.on(LoanRepaid)
    async def loan_repaid(self, event: LoanRepaid, envelope: Envelope) -> None:
        values = {
            "loan_id": event.loan_id,
            "account_id": event.account_id,
            "principal": event.principal.amount,
            "interest": event.interest.amount,
            "late_fees": event.late_fees.amount,
            "outstanding": event.outstanding_principal.amount,
            **_money(event.amount),
        }
        await self._service.notify(event.customer_id, Kind.LOAN_REPAID, values, envelope.event_id)

    @INCOMING.on(InstallmentOverdue)
    async def installment_overdue(self, event: InstallmentOverdue, envelope: Envelope) -> None:
        due = event.due_date
        values = {
            "loan_id": event.loan_id,
            "number": str(event.installment_number),
            "due_date": f"{due.year:04d}-{due.month:02d}-{due.day:02d}",
            "late_fee": event.late_fee.amount,
            **_money(event.amount_owed),
        }
        await self._service.notify(event.customer_id, Kind.INSTALLMENT_OVERDUE, values, envelope.event_id)

    @INCOMING.on(LoanPaidOff)
    async def loan_paid_off(self, event: LoanPaidOff, envelope: Envelope) -> None:
        await self._service.notify(event.customer_id, Kind.LOAN_PAID_OFF, {"loan_id": event.loan_id}, envelope.event_id)
