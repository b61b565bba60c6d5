"""The example mail processor: a bank's transaction-alert mail -> one ``mail_transactions`` row.

``MAILBOX_PROCESSOR=exactly_once.flows.mailbox.transaction_alerts:TransactionAlerts``

An alert is a mail whose subject or text speaks of a transaction, a debit, a credit or a payment
and names an amount ("INR 1,250.00", "USD 12.50", "EUR 1.234,56", "Amount: 99.90"). From its text
(or its HTML, tags stripped) the processor reads the amount and currency, debit or credit, the
date (ISO, dd/mm/yyyy, dd-Mon-yyyy or "1 March 2026"; else the day the mail arrived) and the
reference ("Ref", "Reference", "Txn ID", "UTR"). A mail that is no alert is recorded only; an alert
whose amount cannot be read is rejected (``MailRejectedError``: quarantined at once, a retry would
read the same text).

Bank formats differ: this is a starting point to copy, not a parser for every bank.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg

from exactly_once.core.queries import q
from exactly_once.flows.mailbox.message import ParsedMail
from exactly_once.flows.mailbox.processors import MailRejectedError

_ALERT = re.compile(r"\b(transaction|debited|credited|debit|credit|payment|purchase|withdrawal|spent)\b", re.I)
_CODES = "USD|EUR|GBP|INR|CHF|JPY|CAD|AUD|NZD|SGD|HKD|AED|SEK|NOK|DKK|PLN|CZK|ZAR|BRL|MXN"
_CURRENCY = rf"(?P<cur>{_CODES}|Rs\.?|[$€£₹])"
_NUMBER = r"(?P<num>\d{1,3}(?:[,.' ]\d{3})*(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?)"
_AMOUNTS = (
    re.compile(rf"{_CURRENCY}\s?{_NUMBER}(?![\d])"),
    re.compile(rf"(?<![\w.]){_NUMBER}\s?(?P<cur>{_CODES})\b"),
    re.compile(rf"\bamount\b\s*(?:of|:)?\s*{_NUMBER}", re.I),
)
_AMOUNT_WORD = re.compile(r"\bamount\b\s*(?:of|:)", re.I)
_DEBIT = re.compile(r"\b(debited|debit|spent|purchase|withdrawal|paid|payment to)\b", re.I)
_CREDIT = re.compile(r"\b(credited|credit|received|deposit|refund)\b", re.I)
_REFERENCE = re.compile(
    r"\b(?:ref(?:erence)?(?:\s*(?:no|number))?|txn\s*id|transaction\s*id|utr)\b\.?\s*[:#]?\s*(?P<ref>[A-Z0-9][A-Z0-9/-]{3,40})",
    re.I,
)
_ACCOUNT = re.compile(
    r"\b(?:a/c|acct|account|card)\b[^\n\d]{0,20}(?:[xX*]+|ending(?: in)?\s*)(?P<digits>\d{2,6})\b", re.I
)
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DATES = (
    (re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})\b"), "ymd"),
    (re.compile(r"\b(?P<d>\d{1,2})[/.](?P<m>\d{1,2})[/.](?P<y>\d{4})\b"), "dmy"),
    (re.compile(r"\b(?P<d>\d{1,2})[- ](?P<mon>[A-Za-z]{3})[A-Za-z]*[- ,]+(?P<y>\d{4})\b"), "dmony"),
)
_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "₹": "INR", "RS": "INR", "RS.": "INR"}
_TAGS = re.compile(r"<[^>]+>")


class TransactionAlerts:
    """Reads a transaction alert into ``mail_transactions``; other mails are recorded only."""

    def process(self, conn: psycopg.Connection[Any], mail: ParsedMail) -> Mapping[str, Any] | None:
        text = _plain(mail)
        if not _ALERT.search(f"{mail.subject}\n{text}"):
            return {"transaction": "none"}
        found = amount(text) or amount(mail.subject)
        if found is None:
            if _AMOUNT_WORD.search(text):
                raise MailRejectedError("a transaction alert whose amount cannot be read")
            return {"transaction": "none"}
        value, currency = found
        reference = _REFERENCE.search(text)
        account = _ACCOUNT.search(text)
        row = conn.execute(
            q("mail_transaction_insert"),
            {
                "user_id": mail.user_id,
                "message_id": mail.message_id,
                "amount": value,
                "currency": currency,
                "direction": direction(text),
                "occurred_on": occurred_on(text) or (mail.received_at.date() if mail.received_at else None),
                "reference": reference.group("ref") if reference else None,
                "account_hint": account.group("digits") if account else None,
            },
        ).fetchone()
        return {"transaction": row[0] if row else None, "amount": str(value), "currency": currency}


def _plain(mail: ParsedMail) -> str:
    if mail.text and mail.text.strip():
        return mail.text
    return html.unescape(_TAGS.sub(" ", mail.html or ""))


def amount(text: str) -> tuple[Decimal, str | None] | None:
    """The first amount in ``text`` and its currency code, if named."""
    for pattern in _AMOUNTS:
        for match in pattern.finditer(text):
            value = _decimal(match.group("num"))
            if value is None:
                continue
            symbol = (match.groupdict().get("cur") or "").upper()
            return value, _SYMBOLS.get(symbol, symbol or None)
    return None


def _decimal(number: str) -> Decimal | None:
    digits = number.replace("'", "").replace(" ", "")
    # The last separator followed by 1-2 digits is the decimal one ("1.234,56", "1,234.56").
    head, sep, tail = max((digits.rpartition(s) for s in ",."), key=lambda p: len(p[0]))
    if sep and 1 <= len(tail) <= 2:
        digits = head.replace(",", "").replace(".", "") + "." + tail
    else:
        digits = digits.replace(",", "").replace(".", "")
    try:
        return Decimal(digits).quantize(Decimal("0.01"))
    except InvalidOperation:
        return None


def direction(text: str) -> str | None:
    debit, credit = _DEBIT.search(text), _CREDIT.search(text)
    if debit and (not credit or debit.start() < credit.start()):
        return "debit"
    return "credit" if credit else None


def occurred_on(text: str) -> date | None:
    for pattern, order in _DATES:
        for match in pattern.finditer(text):
            try:
                if order == "dmony":
                    month = _MONTHS.index(match.group("mon").lower()[:3]) + 1
                    return date(int(match.group("y")), month, int(match.group("d")))
                return datetime(int(match.group("y")), int(match.group("m")), int(match.group("d"))).date()
            except ValueError:  # not a date after all (a month 13, "Foo"): try the next
                continue
    return None
