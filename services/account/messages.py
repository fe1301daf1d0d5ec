"""The account context's own terms as its contract spells them: its enums and the events it
publishes. Below the api, the use cases and the repository alike, and above the domain only."""

from __future__ import annotations

from common.events.outgoing import Outgoing
from common.grpc.convert import timestamp
from kernel.convert import ProtoEnum, money_pb
from ogpgy.account.v1 import account_service_pb2 as pb
from ogpgy.account.v1 import events_pb2
from services.account.domain import (
    AccountClosed,
    AccountOpened,
    AccountStatus,
    AccountType,
    Entry,
    HoldStatus,
    InternalAccount,
    Remittance,
    TransferPosted,
)
from services.account.narrative import NO_REMITTANCE

ACCOUNT_TYPE = ProtoEnum(AccountType, pb.AccountType, "ACCOUNT_TYPE_")
ACCOUNT_STATUS = ProtoEnum(AccountStatus, pb.AccountStatus, "ACCOUNT_STATUS_")
HOLD_STATUS = ProtoEnum(HoldStatus, pb.HoldStatus, "HOLD_STATUS_")
INTERNAL_ACCOUNT = ProtoEnum(InternalAccount, pb.InternalAccount, "INTERNAL_ACCOUNT_")


def remittance_of(hold: pb.PlaceHoldRequest | None) -> Remittance:
    """What a hold's request says of the party it pays and its reference (none for other orders)."""
    if hold is None:
        return NO_REMITTANCE
    return Remittance(hold.counterparty_name, hold.counterparty_iban, hold.reference)


def entry_pb(e: Entry) -> pb.Entry:
    return pb.Entry(
        transfer_id=e.transfer_id,
        amount=money_pb(e.amount),
        balance_after=money_pb(e.balance_after),
        counterparty_account_id=e.counterparty_account_id,
        description=e.description,
        post_time=timestamp(e.posted_at),
        counterparty_name=e.counterparty_name,
        counterparty_iban=e.counterparty_iban,
        reference=e.reference,
    )


OUTGOING = Outgoing()
OUTGOING.route(
    AccountOpened,
    events_pb2.AccountOpened,
    lambda e: events_pb2.AccountOpened(
        account_id=e.account.account_id,
        customer_id=e.account.customer_id,
        type=ACCOUNT_TYPE.pb(e.account.type),
        open_time=timestamp(e.account.opened_at),
    ),
)
OUTGOING.route(
    AccountClosed,
    events_pb2.AccountClosed,
    lambda e: events_pb2.AccountClosed(account_id=e.account_id, customer_id=e.customer_id, close_time=timestamp(e.at)),
)
OUTGOING.route(
    TransferPosted,
    events_pb2.TransferPosted,
    lambda e: events_pb2.TransferPosted(
        transfer_id=e.transfer.transfer_id,
        debit_account_id=e.transfer.debit_account_id,
        credit_account_id=e.transfer.credit_account_id,
        amount=money_pb(e.transfer.amount),
        reverses_transfer_id=e.transfer.reverses_transfer_id,
        post_time=timestamp(e.transfer.posted_at),
    ),
)
