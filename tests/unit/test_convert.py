"""Conversions shared by every api.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from common.grpc.convert import calendar_date, fingerprint, timestamp
from ogpgy.customer.v1 import customer_service_pb2 as pb


@pytest.mark.parametrize(
    "instant",
    [
        datetime(2026, 6, 15, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=2))),
        datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC),
    ],
)
def test_timestamp_equals_the_protobuf_conversion(instant: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(instant)
    assert timestamp(instant) == expected


def test_fingerprint_tells_content_apart_and_is_stable() -> None:
    a = pb.OnboardCustomerRequest(request_id="a", email="x@y.zz", given_name="Ada")
    same = pb.OnboardCustomerRequest(given_name="Ada", email="x@y.zz", request_id="a")
    other = pb.OnboardCustomerRequest(request_id="a", email="other@y.zz", given_name="Ada")
    assert fingerprint(a) == fingerprint(same) != fingerprint(other)


def test_impossible_or_unset_dates_are_none() -> None:
    assert calendar_date(2001, 2, 29) is None
    assert calendar_date(0, 0, 0) is None
    assert calendar_date(2000, 2, 29) is not None


def test_ids_are_ulids_sortable_by_time() -> None:
    import re
    import time

    from common.ids import new_id

    first = new_id("acc")
    time.sleep(0.002)
    second = new_id("acc")
    assert re.fullmatch(r"acc_[0-9A-HJKMNP-TV-Z]{26}", first)
    assert first < second
    assert len({new_id("x") for _ in range(1000)}) == 1000
