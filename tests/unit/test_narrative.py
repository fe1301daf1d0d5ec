"""What a statement's entries say (services/account/narrative.py): never blank, per side, and
the party outside the bank shown only where the counterparty account is one of the bank's own."""

from __future__ import annotations

from services.account.narrative import EntryText, Remittance, entry_texts

PAYEE = Remittance("Max Muster", "DE89370400440532013000", "Invoice 42")


def test_a_movement_without_a_description_says_what_it_was_on_each_side() -> None:
    assert entry_texts("", Remittance(), ("acc_CASH_EUR", "CASH"), ("acc_a", None)) == (
        EntryText("Deposit", "", "", ""),
        EntryText("Deposit", "", "", ""),
    )
    out, into = entry_texts("", Remittance(), ("acc_a", None), ("acc_CASH_EUR", "CASH"))
    assert (out.description, into.description) == ("Withdrawal", "Withdrawal")
    out, into = entry_texts("", Remittance(), ("acc_a", None), ("acc_b", None))
    assert (out.description, into.description) == ("Transfer to acc_b", "Transfer from acc_a")


def test_the_payee_outside_the_bank_is_shown_on_the_payers_entry_only() -> None:
    out, into = entry_texts("Payment to Max Muster", PAYEE, ("acc_a", None), ("acc_CLEARING_EUR", "CLEARING"))
    assert out == EntryText("Payment to Max Muster", "Max Muster", "DE89370400440532013000", "Invoice 42")
    assert into == EntryText("Payment to Max Muster", "", "", "Invoice 42")
    back, returned = entry_texts("refund", PAYEE, ("acc_CLEARING_EUR", "CLEARING"), ("acc_a", None))  # a reversal
    assert (back.counterparty_name, returned.counterparty_name) == ("", "Max Muster")
    assert entry_texts("", PAYEE, ("acc_a", None), ("acc_CLEARING_EUR", "CLEARING"))[0].description == "Transfer to Max Muster"
