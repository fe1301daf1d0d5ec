"""The interest context's events as the messages it publishes. Below the api, the use cases and
the adapters alike, and above the domain only."""

from __future__ import annotations

from common.events.outgoing import Outgoing
from kernel.convert import date_pb, money_pb
from ogpgy.interest.v1 import events_pb2
from services.interest.domain import InterestPosted

OUTGOING = Outgoing()
OUTGOING.route(
    InterestPosted,
    events_pb2.InterestPosted,
    lambda e: events_pb2.InterestPosted(business_date=date_pb(e.day), accounts=e.accounts, total_interest=money_pb(e.total)),
)
