"""Holds in memory, for the fakes of the account context that payment and lending tests use."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.money import Money


@dataclass
class Hold:
    hold_id: str
    debtor: str
    creditor: str
    amount: Money
    status: str = "PLACED"
    transfer_id: str = ""


@dataclass
class HoldBook:
    """Holds by the request id that placed them (a second PlaceHold of it answers the first);
    a capture moves `balances` once."""

    balances: dict[str, int]
    holds: dict[str, Hold] = field(default_factory=dict)

    def place(self, request_id: str, debtor: str, creditor: str, amount: Money) -> Hold:
        return self.holds.setdefault(request_id, Hold(f"hld_{len(self.holds)}", debtor, creditor, amount))

    def by_id(self, hold_id: str) -> Hold:
        return next(h for h in self.holds.values() if h.hold_id == hold_id)

    def capture(self, hold_id: str) -> str:
        hold = self.by_id(hold_id)
        if hold.status == "PLACED":
            hold.status, hold.transfer_id = "CAPTURED", f"trf_{hold_id}"
            self.balances[hold.debtor] -= hold.amount.minor
            self.balances[hold.creditor] += hold.amount.minor
        return hold.transfer_id
