"""Exact money: integer minor units and an ISO 4217 currency. Never a float.

Generic (any business that counts money uses it); parsing accepts the decimal strings of the
ogpgy.type.v1.Money contract and refuses more digits than the currency has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from common.validation import Violations

# Minor digits of the currencies the bank keeps accounts in.
CURRENCY_EXPONENTS: dict[str, int] = {"EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "SEK": 2, "JPY": 0}
_AMOUNT = re.compile(r"-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,4})?")
# The ledger's limit, in minor units, for any amount and any balance (positive or negative):
# 9,999,999,999,999.99 EUR, 999,999,999,999,999 JPY. Every SQL computation on minor units stays
# exact in 64-bit integers below it, with room for sums over thousands of accounts at the limit.
MAX_MINOR = 999_999_999_999_999


@dataclass(frozen=True, order=True)
class Money:
    currency: str
    minor: int

    @classmethod
    def parse(cls, currency: str, amount: str) -> Money:
        """From the contract's decimal string; ValueError says what is wrong."""
        if currency not in CURRENCY_EXPONENTS:
            raise ValueError(f"unsupported currency {currency!r}; supported: {', '.join(sorted(CURRENCY_EXPONENTS))}")
        if not _AMOUNT.fullmatch(amount):
            raise ValueError("must be a decimal string like 12.50")
        exponent = CURRENCY_EXPONENTS[currency]
        value = Decimal(amount)
        minor = value.scaleb(exponent)
        if minor != minor.to_integral_value():
            raise ValueError(f"{currency} has {exponent} minor digits")
        if abs(minor) > MAX_MINOR:
            raise ValueError(f"at most {Money(currency, MAX_MINOR).amount} {currency} (the ledger's limit)")
        return cls(currency, int(minor))

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(currency, 0)

    @property
    def exponent(self) -> int:
        return CURRENCY_EXPONENTS[self.currency]

    @property
    def amount(self) -> str:
        """The decimal string of the contract, e.g. "1250.75", "-3.10", "0.00"."""
        return f"{Decimal(self.minor).scaleb(-self.exponent):.{self.exponent}f}"

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.currency, self.minor + other.minor)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.currency, self.minor - other.minor)

    def __neg__(self) -> Money:
        return Money(self.currency, -self.minor)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} and {other.currency}")

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def parse_money(v: Violations, currency: str, amount: str, field: str, *, positive: bool = True) -> Money | None:
    """Money from a request, or None with a violation of `field`.currency_code / `field`.amount."""
    if currency not in CURRENCY_EXPONENTS:
        v.add(f"{field}.currency_code", f"required: one of {', '.join(sorted(CURRENCY_EXPONENTS))}")
        return None
    money = v.guard(f"{field}.amount", lambda: Money.parse(currency, amount))
    if isinstance(money, Money) and positive and money.minor <= 0:
        v.add(f"{field}.amount", "must be greater than zero")
        return None
    return money if isinstance(money, Money) else None
