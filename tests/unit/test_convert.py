"""Conversions shared by every api.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from ogpgy.customer.v1 import customer_service_pb2 as pb

from common.grpc.convert import calendar_date, fingerprint, timestamp


@pytest.mark.parametrize(
    "instant",
    [
        datetime(2026, 6, 15, 12, 0, 0, 123456, tzinfo=timezone.utc),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=2))),
        datetime(1969, 7, 20, 20, 17, 40, tzinfo=timezone.utc),
    ],
)
def test_timestamp_equals_the_protobuf_conversion(instant: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(instant)
    assert timestamp(instant) == expected


def test_fingerprint_ignores_request_id_only() -> None:
    a = pb.OnboardCustomerRequest(request_id="a", email="x@y.zz")
    b = pb.OnboardCustomerRequest(request_id="b", email="x@y.zz")
    c = pb.OnboardCustomerRequest(request_id="a", email="other@y.zz")
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    assert a.request_id == "a", "the request itself is not modified"


def test_impossible_or_unset_dates_are_none() -> None:
    assert calendar_date(2001, 2, 29) is None
    assert calendar_date(0, 0, 0) is None
    assert calendar_date(2000, 2, 29) is not None
