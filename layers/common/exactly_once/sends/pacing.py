"""How fast one sender account may send: the rules a ``sender_pacing`` row holds, and each channel's defaults.

The rules are enforced by the claim statement itself (``sender_pacing_take``, migration 0013), so no
worker's memory and no clock but Postgres' decides: a daily cap and a weekly cap (per the sender's local
day and ISO week), a spacing drawn at random between ``min_spacing_seconds`` and ``max_spacing_seconds``
after each send (jitter: LinkedIn flags machine-regular sending), and working hours on working days in
the sender's own time zone. A new account's row is created with its channel's defaults; one account is
changed with ``set_pacing`` (its counters stay).

LinkedIn (channel ``unipile``) defaults, and where they come from (docs/send-queue.md, "Pacing"):
Unipile's provider-limits guidance gives 80-100 invitations a day and about 200 a week for a paid
account, with actions spaced about a minute apart, randomised; its send-messages guide asks for 10-20 s
or more between messages; exceeding the limits gives HTTP 429 or 500 and risks a restriction. No daily
cap for messages is published, so the default stays well under the invitation figures: 40 a day,
150 a week, 2 to 5 minutes apart, 09:00-18:00 Monday to Friday. WhatsApp replies answer a customer who
just wrote: no spacing, no hours, the old cap of 1000 a day.

Overrides, read per claim: ``SEND_PACING`` (JSON ``{"unipile": {"daily_cap": 80, ...}, ...}``, fields of
``PacingRule``); the older ``SEND_DAILY_CAP`` and ``SEND_MIN_SPACING_MS`` still set the daily cap and the
minimum spacing of every channel when given (>= 0).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from datetime import time
from typing import Any

from exactly_once.core.errors import ConfigurationError
from exactly_once.sends.request import INTERNAL_CHANNELS

WEEKDAYS = (1, 2, 3, 4, 5)  # ISO: Monday = 1
EVERY_DAY = (1, 2, 3, 4, 5, 6, 7)


@dataclass(frozen=True)
class PacingRule:
    """One sender account's rules. ``None`` for ``weekly_cap`` or the working hours: no such limit."""

    daily_cap: int
    weekly_cap: int | None = None
    min_spacing_seconds: float = 0.0
    max_spacing_seconds: float | None = None  # the spacing is drawn in [min, max]; None = min (no jitter)
    time_zone: str = "UTC"  # IANA name (Europe/Paris): the sender's day, week and working hours
    work_start: time | None = None
    work_end: time | None = None
    work_days: tuple[int, ...] = EVERY_DAY

    def __post_init__(self) -> None:
        if self.daily_cap < 0 or (self.weekly_cap is not None and self.weekly_cap < 0):
            raise ConfigurationError("pacing caps must be >= 0")
        if self.min_spacing_seconds < 0 or (self.max_spacing_seconds or 0) < 0:
            raise ConfigurationError("pacing spacings must be >= 0")
        if (self.work_start is None) != (self.work_end is None):
            raise ConfigurationError("pacing working hours need both work_start and work_end")
        if self.work_start is not None and self.work_end is not None and self.work_start >= self.work_end:
            raise ConfigurationError("pacing work_start must be before work_end (windows across midnight: no)")
        if not set(self.work_days) <= set(EVERY_DAY):
            raise ConfigurationError("pacing work_days are ISO weekdays, 1 (Monday) to 7")

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["work_start"] = self.work_start.isoformat() if self.work_start else None
        data["work_end"] = self.work_end.isoformat() if self.work_end else None
        data["work_days"] = list(self.work_days)
        return data

    def params(self) -> dict[str, Any]:
        """The ``send_pacing_set`` parameters of this rule."""
        return {**asdict(self), "work_days": list(self.work_days)}


DEFAULTS: dict[str, PacingRule] = {
    "unipile": PacingRule(
        daily_cap=40,
        weekly_cap=150,
        min_spacing_seconds=120,
        max_spacing_seconds=300,
        work_start=time(9, 0),
        work_end=time(18, 0),
        work_days=WEEKDAYS,
    ),
    "whatsapp": PacingRule(daily_cap=1000),
    # Forwards (sends/forward.py): no spacing, no hours, a cap no stack reaches; a receiver that is
    # overwhelmed answers 429 and the sender waits its Retry-After.
    "forward": PacingRule(daily_cap=1_000_000),
    # The bundle's own channels (request.INTERNAL_CHANNELS) go at the pace their events settle; the
    # legacy SEND_DAILY_CAP and SEND_MIN_SPACING_MS leave them alone. Graph allows 10,000 requests per
    # 10 minutes per mailbox and app, and says so with a 429 and Retry-After (the sender's rate limit).
    "graph": PacingRule(daily_cap=1_000_000),
}


def rule_from(data: dict[str, Any], base: PacingRule) -> PacingRule:
    """``base`` with the fields ``data`` names (JSON: times as "09:00", work_days as a list)."""
    known = {f.name for f in fields(PacingRule)}
    unknown = set(data) - known
    if unknown:
        raise ConfigurationError(f"unknown pacing fields: {sorted(unknown)}")
    values = dict(data)
    for name in ("work_start", "work_end"):
        if isinstance(values.get(name), str):
            values[name] = time.fromisoformat(values[name])
    if "work_days" in values:
        values["work_days"] = tuple(int(d) for d in values["work_days"])
    return replace(base, **values)


def defaults(channel: str) -> PacingRule:
    """The channel's defaults with this environment's overrides applied."""
    rule = DEFAULTS.get(channel, DEFAULTS["whatsapp"])
    raw = os.environ.get("SEND_PACING", "").strip()
    if raw:
        try:
            overrides = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(f"SEND_PACING is not JSON: {exc}") from exc
        if isinstance(overrides.get(channel), dict):
            rule = rule_from(overrides[channel], rule)
    if channel in INTERNAL_CHANNELS:
        return rule
    daily = _legacy("SEND_DAILY_CAP")
    if daily is not None:
        rule = replace(rule, daily_cap=int(daily))
    spacing_ms = _legacy("SEND_MIN_SPACING_MS")
    if spacing_ms is not None:
        low = spacing_ms / 1000.0
        high = rule.max_spacing_seconds
        rule = replace(rule, min_spacing_seconds=low, max_spacing_seconds=None if high is None else max(high, low))
    return rule


def all_defaults() -> dict[str, dict[str, Any]]:
    """Every channel's defaults as the claim statement reads them (``sender_pacing_take``)."""
    return {channel: defaults(channel).as_json() for channel in DEFAULTS}


def _legacy(name: str) -> float | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    number = float(value)
    return number if number >= 0 else None
