"""What a statement says of a movement beyond its accounts and amounts: each entry's description,
the party outside the bank on the other side, and the reference the request carried. Pure, like
the domain, which imports it (a statement line is the ledger's, decided when the money moves).

No entry is blank: a movement asked for without a description gets one from its accounts, per
side ("Deposit", "Withdrawal", "Transfer to acc_…", "Transfer from acc_…"). The party outside
the bank (an external payment's payee, as the payment context named them) stands behind one of
the bank's own accounts (clearing), so it is shown on the entry whose counterparty account is one
of the bank's: the customer's, never the clearing account's own. The ledger keeps no holders'
names, so a transfer between two customers' accounts names no party (its counterparty account
does); a customer's name is the customer context's, a call away, not worth one per entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from common.money import Money

CASH = "CASH"  # InternalAccount.CASH's value: money in and out over the counter


@dataclass(frozen=True)
class Remittance:
    """What the request said of the payment beyond the accounts: the party outside the bank it
    pays (name and IBAN) and its reference (remittance information)."""

    counterparty_name: str = ""
    counterparty_iban: str = ""
    reference: str = ""


NO_REMITTANCE = Remittance()


@dataclass(frozen=True)
class Entry:
    """One line of a statement: a signed movement and the balance after it."""

    transfer_id: str
    amount: Money
    balance_after: Money
    counterparty_account_id: str
    description: str
    posted_at: datetime
    counterparty_name: str = ""
    counterparty_iban: str = ""
    reference: str = ""


@dataclass(frozen=True)
class EntryText:
    """What one side's entry of a transfer says."""

    description: str
    counterparty_name: str
    counterparty_iban: str
    reference: str


def entry_texts(
    description: str, remittance: Remittance, debit: tuple[str, str | None], credit: tuple[str, str | None]
) -> tuple[EntryText, EntryText]:
    """The debited and the credited account's entry texts; `debit` and `credit` are each the
    account's id and, for one of the bank's own accounts, its kind (InternalAccount's value)."""
    (debit_id, debit_kind), (credit_id, credit_kind) = debit, credit
    name = remittance.counterparty_name
    cash = "Deposit" if debit_kind == CASH else "Withdrawal" if credit_kind == CASH else ""  # both sides say so
    out = description or cash or f"Transfer to {name or credit_id}"
    into = description or cash or f"Transfer from {debit_id}"
    outside = (name, remittance.counterparty_iban)
    shown_out, shown_in = (outside if credit_kind else ("", "")), (outside if debit_kind else ("", ""))
    return (EntryText(out, *shown_out, remittance.reference), EntryText(into, *shown_in, remittance.reference))
