"""Money: the contract's decimal strings parsed whole or refused, the ledger's limit, the minor
digits of each currency, and arithmetic that never mixes currencies."""

from __future__ import annotations

import pytest

from common.errors import FieldViolation, ValidationFailed
from common.money import CURRENCY_EXPONENTS, MAX_MINOR, Money, parse_money
from common.validation import Violations
from kernel.convert import money_of, money_pb, requested_money
from ogpgy.type.v1 import money_pb2


@pytest.mark.parametrize(
    "amount",
    [
        "12.50abc",
        "12.50 ",
        " 12.50",
        "1e5",
        "1E5",
        "12.",
        ".5",
        "+1",
        "--1",
        "01",
        "1,00",
        "0x10",
        "NaN",
        "Infinity",
        "1_000",
        "",
    ],
)
def test_an_amount_is_parsed_whole_or_refused(amount: str) -> None:
    """A prefix that reads as a number is not the number: "12.50abc" is no 12.50, "1e5" no 100000."""
    with pytest.raises(ValueError, match="decimal string"):
        Money.parse("EUR", amount)


@pytest.mark.parametrize(
    ("currency", "amount", "minor"),
    [("EUR", "12.50", 1250), ("EUR", "-3.1", -310), ("EUR", "0", 0), ("JPY", "1000", 1000), ("USD", "7.0000", 700)],
)
def test_a_decimal_string_is_exact_minor_units(currency: str, amount: str, minor: int) -> None:
    assert Money.parse(currency, amount) == Money(currency, minor)


# ISO 4217: the minor digits of every currency the bank keeps accounts in.
ISO_4217 = {"EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "SEK": 2, "JPY": 0}


def test_every_currency_has_its_iso_4217_minor_digits() -> None:
    assert CURRENCY_EXPONENTS == ISO_4217


@pytest.mark.parametrize("currency", sorted(ISO_4217))
def test_a_currency_takes_its_minor_digits_and_not_one_more(currency: str) -> None:
    digits = ISO_4217[currency]
    smallest = "1" if digits == 0 else "0." + "0" * (digits - 1) + "1"
    assert Money.parse(currency, smallest) == Money(currency, 1)
    assert Money(currency, 1).amount == smallest
    with pytest.raises(ValueError, match=f"{currency} has {digits} minor digits"):
        Money.parse(currency, ("0." + "0" * digits + "1") if digits else "0.1")


def test_unknown_currencies_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported currency"):
        Money.parse("XAU", "1.00")


@pytest.mark.parametrize("sign", ["", "-"])
def test_the_ledger_limit_itself_is_an_amount_and_one_minor_unit_more_is_not(sign: str) -> None:
    assert MAX_MINOR == 999_999_999_999_999
    assert Money.parse("EUR", f"{sign}9999999999999.99") == Money("EUR", int(f"{sign}{MAX_MINOR}"))
    assert Money.parse("JPY", f"{sign}999999999999999") == Money("JPY", int(f"{sign}{MAX_MINOR}"))
    with pytest.raises(ValueError, match="the ledger's limit"):
        Money.parse("EUR", f"{sign}10000000000000.00")
    with pytest.raises(ValueError):  # sixteen digits: past the contract's pattern before the limit
        Money.parse("JPY", f"{sign}1000000000000000")


def test_the_contracts_string_of_an_amount() -> None:
    assert Money("EUR", 125075).amount == "1250.75"
    assert Money("EUR", -310).amount == "-3.10"
    assert Money("EUR", 0).amount == "0.00"
    assert Money("JPY", 1500).amount == "1500"
    assert str(Money("USD", 5)) == "0.05 USD"
    assert Money.zero("GBP") == Money("GBP", 0)


def test_arithmetic_keeps_the_currency_and_never_mixes_two() -> None:
    assert Money("EUR", 250) + Money("EUR", 5) == Money("EUR", 255)
    assert Money("EUR", 250) - Money("EUR", 5) == Money("EUR", 245)
    assert -Money("EUR", 250) == Money("EUR", -250)
    with pytest.raises(ValueError, match="cannot combine"):
        Money("EUR", 1) + Money("USD", 1)
    with pytest.raises(ValueError, match="cannot combine"):
        Money("EUR", 1) - Money("USD", 1)


def _requested(currency: str, amount: str, *, positive: bool = True) -> tuple[Money | None, dict[str, str]]:
    v = Violations()
    money = parse_money(v, currency, amount, "amount", positive=positive)
    if not v:
        return money, {}
    return money, {f.field: f.description for f in _violations(v)}


def _violations(v: Violations) -> list[FieldViolation]:
    with pytest.raises(ValidationFailed) as failed:
        v.raise_if_any()
    return failed.value.violations


def test_a_requested_amount_is_positive_unless_the_request_allows_otherwise() -> None:
    assert _requested("EUR", "0.01") == (Money("EUR", 1), {})
    assert _requested("EUR", "0.00") == (None, {"amount.amount": "must be greater than zero"})
    assert _requested("EUR", "-0.01") == (None, {"amount.amount": "must be greater than zero"})
    assert _requested("EUR", "0.00", positive=False) == (Money("EUR", 0), {})
    assert _requested("EUR", "-0.01", positive=False) == (Money("EUR", -1), {})
    v = Violations()
    assert parse_money(v, "EUR", "0.00", "fee") is None, "positive unless said otherwise"
    assert [f.field for f in _violations(v)] == ["fee.amount"]


def test_a_requested_amount_names_the_field_it_breaks() -> None:
    money, violations = _requested("XAU", "1.00")
    assert money is None and list(violations) == ["amount.currency_code"]
    money, violations = _requested("EUR", "12.50abc")
    assert money is None and list(violations) == ["amount.amount"]
    money, violations = _requested("EUR", "1.001", positive=False)
    assert money is None and list(violations) == ["amount.amount"]


def test_money_between_the_domain_and_its_protobuf_form() -> None:
    assert money_of(money_pb(Money("EUR", -310))) == Money("EUR", -310)
    v = Violations()
    assert requested_money(v, money_pb2.Money(currency_code="EUR", amount="0.00"), "amount") is None
    assert requested_money(v, money_pb2.Money(currency_code="EUR", amount="-1.00"), "fee", positive=False) == Money("EUR", -100)
    assert [f.field for f in _violations(v)] == ["amount.amount"]
