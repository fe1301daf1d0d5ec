"""PlaceHolds' own rule, in its contract (so every client can check it before sending): one
request_id per hold, since a hold's request_id is the idempotency key of that hold alone."""

from __future__ import annotations

from common.grpc.contract_rules import contract_violations
from ogpgy.account.v1 import account_service_pb2 as pb

DEBTOR, PAYEE = "acc_01M99SPDADX6S1HVCJ972JP106", "acc_01M99SPDADX6S1HVCJ972JP107"


def _hold(request_id: str) -> pb.PlaceHoldRequest:
    return pb.PlaceHoldRequest(request_id=request_id, debit_account_id=DEBTOR, credit_account_id=PAYEE)


def test_a_request_id_twice_in_one_request_is_refused_on_holds() -> None:
    assert [v.field for v in contract_violations(pb.PlaceHoldsRequest(holds=[_hold("a"), _hold("b"), _hold("a")]))] == ["holds"]
    assert contract_violations(pb.PlaceHoldsRequest(holds=[_hold("a"), _hold("b")])) == []
