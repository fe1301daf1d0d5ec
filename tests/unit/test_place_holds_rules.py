"""PlaceHolds refuses one request_id twice in a request (each names one hold); the refusal is
INVALID_ARGUMENT on `holds`, decided before anything is read or written."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from common.errors import ValidationFailed
from common.idempotency import IdempotencyKey
from common.money import Money
from services.account import movements
from services.account.domain import TransferOrder


def _order(request_id: str) -> tuple[TransferOrder, IdempotencyKey]:
    order = TransferOrder("acc_a", "acc_b", Money("EUR", 100), "rent")
    return order, IdempotencyKey(request_id, "PlaceHold", "-", "svc:payment")


async def test_a_request_id_twice_in_one_request_is_refused_on_holds_before_anything_is_read() -> None:
    untouchable: Any = object()  # any read or write of the unit would fail on it
    with pytest.raises(ValidationFailed) as refused:
        await movements.place_holds(untouchable, [_order("a"), _order("b"), _order("a")], datetime.now(UTC), "payment", "")
    assert [v.field for v in refused.value.violations] == ["holds"]
