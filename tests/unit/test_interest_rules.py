"""Daily interest computed by hand: tier edges, half-even rounding, zero and overdrawn, leap day."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kernel.interest import InterestTier, daily_interest

TIERS = (InterestTier(100_000, Decimal("0.005")), InterestTier(1_000_000, Decimal("0.015")), InterestTier(None, Decimal("0.025")))


@pytest.mark.parametrize(
    ("balance_minor", "expected_minor", "worked"),
    [
        (100_000, 1, "1,000.00 x 0.5 % / 365 = 0.013698 -> 0.01"),
        (100_001, 4, "1,000.01 x 1.5 % / 365 = 0.041096 -> 0.04"),
        (1_000_000, 41, "10,000.00 x 1.5 % / 365 = 0.410959 -> 0.41"),
        (1_000_001, 68, "10,000.01 x 2.5 % / 365 = 0.684932 -> 0.68"),
        (36_500, 0, "365.00 x 0.5 % / 365 = 0.005 exactly -> half-even 0.00"),
        (109_500, 4, "1,095.00 x 1.5 % / 365 = 0.045 exactly -> half-even 0.04"),
        (255_500, 10, "2,555.00 x 1.5 % / 365 = 0.105 exactly -> half-even 0.10"),
        (0, 0, "zero earns nothing"),
        (-5_000, 0, "overdrawn earns nothing"),
        (-10_000_000, 0, "overdrawn by 100,000.00 earns nothing either (not -1.37)"),
    ],
)
def test_daily_interest_by_hand(balance_minor: int, expected_minor: int, worked: str) -> None:
    assert daily_interest(balance_minor, TIERS) == expected_minor, worked


def test_a_leap_year_has_366_accruals_of_a_365th_each() -> None:
    """Actual/365 Fixed: 29 February accrues like any day, so a leap year pays 366/365 of the rate."""
    days_2028 = 366
    daily = daily_interest(10_000_000, TIERS)  # 100,000.00 x 2.5 % / 365 = 6.849315 -> 6.85
    assert daily == 685 and daily * days_2028 == 250_710


def test_the_set_based_sql_agrees_with_the_decimal_rule() -> None:
    """The SQL that posts interest in bulk must give exactly daily_interest, rounding included."""
    import random
    import sqlite3

    from services.account.bulk_postings import interest_sql

    rng = random.Random(5)
    balances = [0, -1, 36_500, 109_500, 255_500, 100_000, 100_001, 1_000_000, 1_000_001]
    balances += [rng.randint(-10_000, 10**12) for _ in range(20_000)]
    balances += [365 * k for k in range(1, 2_000)]  # exact halves are frequent at multiples of 365
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE accounts (balance_minor BIGINT)")
    conn.executemany("INSERT INTO accounts VALUES (?)", [(b,) for b in balances])
    computed = [row[0] for row in conn.execute(f"SELECT {interest_sql(TIERS)} FROM accounts ORDER BY rowid")]
    assert computed == [daily_interest(b, TIERS) for b in balances]


def test_the_sql_stays_exact_up_to_the_ledgers_limit() -> None:
    """balance x rate passes 64 bits long before the limit (a float on SQLite, an error on
    PostgreSQL); the SQL never forms that product, and agrees with the rule to the last cent."""
    import random
    import sqlite3

    from common.money import MAX_MINOR
    from services.account.bulk_postings import interest_sql

    rng = random.Random(7)
    tiers = (InterestTier(10**12, Decimal("0.5")), InterestTier(None, Decimal("0.999999")))
    balances = [MAX_MINOR, MAX_MINOR - 1, 10**12, 10**12 + 1, 9_223_372_036_854 * 100]
    balances += [rng.randint(10**12, MAX_MINOR) for _ in range(5_000)] + [
        365 * rng.randint(1, MAX_MINOR // 365) for _ in range(2_000)
    ]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE accounts (balance_minor BIGINT)")
    conn.executemany("INSERT INTO accounts VALUES (?)", [(b,) for b in balances])
    computed = conn.execute(
        f"SELECT {interest_sql(tiers)}, typeof({interest_sql(tiers)}) FROM accounts ORDER BY rowid"
    ).fetchall()
    assert {kind for _, kind in computed} == {"integer"}
    assert [value for value, _ in computed] == [daily_interest(b, tiers) for b in balances]
