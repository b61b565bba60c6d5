"""The example processor's reading of alert texts (the dovecot tests run it on real mails)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from exactly_once.flows.mailbox.transaction_alerts import amount, direction, occurred_on


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("INR 1,250.00 debited from A/c XX1234", (Decimal("1250.00"), "INR")),
        ("You spent $12.5 at Coffee", (Decimal("12.50"), "USD")),
        ("Betrag: EUR 1.234,56 belastet", (Decimal("1234.56"), "EUR")),
        ("A payment of 99.90 GBP was received", (Decimal("99.90"), "GBP")),
        ("Rs. 500 credited, UTR 123456789", (Decimal("500.00"), "INR")),
        ("Transaction amount: 42", (Decimal("42.00"), None)),
        ("Ref ABC12345 for your transaction", None),
    ],
)
def test_the_amount_and_its_currency(text, expected):
    assert amount(text) == expected


def test_debit_or_credit_is_the_first_word_that_says_so():
    assert direction("INR 10 debited; refund credited later") == "debit"
    assert direction("USD 10 credited to your account") == "credit"
    assert direction("a transaction happened") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("on 2026-03-01 at 10:00", date(2026, 3, 1)),
        ("on 01/03/2026", date(2026, 3, 1)),
        ("on 1-Mar-2026", date(2026, 3, 1)),
        ("on 1 March 2026", date(2026, 3, 1)),
        ("on 31/02/2026, then 02/03/2026", date(2026, 3, 2)),
        ("no date here", None),
    ],
)
def test_the_date(text, expected):
    assert occurred_on(text) == expected
