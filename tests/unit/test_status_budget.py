"""A status never outweighs what a gRPC client accepts (8 KiB of trailers by default): however many
violations, however long the text a caller sent that an error repeats."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from google.rpc import error_details_pb2, status_pb2

from common.errors import AppError, FieldViolation, NotFound, PreconditionFailed, ValidationFailed
from common.grpc.status import DETAILS_BUDGET, MESSAGE_BUDGET, to_grpc_status

CLIENT_LIMIT = 8 * 1024  # grpc.max_metadata_size's default


def _trailers(error: AppError) -> tuple[int, status_pb2.Status]:
    """The bytes of the trailers on the wire (details base64, message percent-encoded) and the status."""
    status = to_grpc_status(error)
    details = dict(status.trailing_metadata)["grpc-status-details-bin"]
    wire = len(base64.b64encode(details)) + len(quote(status.details, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~"))
    return wire, status_pb2.Status.FromString(details)


@pytest.mark.parametrize("count", [1, 30, 2000, 10_000])
@pytest.mark.parametrize("text", ["one of LOAN_REPAID, PAYMENT_QUEUED, WELCOME", "é" * 1000, "\U0001f4b6" * 1000])
def test_many_long_violations_fit_with_the_first_ones_and_a_count_of_the_rest(count: int, text: str) -> None:
    violations = [FieldViolation(f"opted_out_kinds[{i}]", text) for i in range(count)]
    wire, status = _trailers(ValidationFailed(violations))
    assert wire < CLIENT_LIMIT // 2 + 2 * 1024 and status.ByteSize() <= DETAILS_BUDGET + 256
    bad = error_details_pb2.BadRequest()
    status.details[1].Unpack(bad)
    listed = [v for v in bad.field_violations if v.reason != "TOO_MANY_VIOLATIONS"]
    assert [v.field for v in listed] == [f"opted_out_kinds[{i}]" for i in range(len(listed))], "in order, none skipped"
    if len(listed) < count:
        assert bad.field_violations[-1].description.startswith(f"and {count - len(listed)} more violations")
    assert len(status.message.encode()) <= MESSAGE_BUDGET


def test_a_short_refusal_is_sent_as_it_was() -> None:
    error = ValidationFailed([FieldViolation("month", "must have ended (today is 2026-06-15)")])
    assert _trailers(error)[1].message == "invalid request: month: must have ended (today is 2026-06-15)"


@pytest.mark.parametrize(
    "error",
    [NotFound("account", "acc_" + "x" * 100_000), PreconditionFailed("X", "y" * 100_000, {"name": "z" * 100_000})],
)
def test_text_a_caller_sent_is_cut_to_fit(error: AppError) -> None:
    assert _trailers(error)[0] < 3 * 1024
