"""EventBridge schedule expressions, locally: ``rate(...)`` and ``cron(...)`` on a timer thread."""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}
_DOW = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_MON = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}


class ScheduleExpressionError(ValueError):
    """An expression this local timer does not understand."""


def _field(spec: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int]:
    """One cron field (``*``, ``?``, ``1,5``, ``1-5``, ``*/10``, ``MON-FRI``) as the set of values it allows."""
    if spec in ("*", "?"):
        return set(range(low, high + 1))
    allowed: set[int] = set()
    for part in spec.split(","):
        base, _, step = part.partition("/")
        if any(c in base for c in "LW#"):
            raise ScheduleExpressionError(f"cron field {spec!r}: L, W and # are not supported locally")

        def value(token: str) -> int:
            return (names or {}).get(token.upper(), None) or int(token)

        if base in ("*", "?"):
            start, end = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            start, end = value(a), value(b)
        else:
            start = value(base)
            end = high if step else start
        allowed.update(range(start, end + 1, int(step) if step else 1))
    return allowed


class CronExpression:
    """AWS cron: minutes hours day-of-month month day-of-week year (UTC)."""

    def __init__(self, body: str) -> None:
        parts = body.split()
        if len(parts) != 6:
            raise ScheduleExpressionError(f"cron needs 6 fields, got {body!r}")
        self.minutes = _field(parts[0], 0, 59)
        self.hours = _field(parts[1], 0, 23)
        self.dom = _field(parts[2], 1, 31)
        self.months = _field(parts[3], 1, 12, _MON)
        self.dow = _field(parts[4], 1, 7, _DOW)  # 1 = Sunday, as in AWS
        self.years = _field(parts[5], 1970, 2199)

    def matches(self, t: dt.datetime) -> bool:
        aws_dow = (t.isoweekday() % 7) + 1
        return (
            t.minute in self.minutes
            and t.hour in self.hours
            and t.day in self.dom
            and t.month in self.months
            and aws_dow in self.dow
            and t.year in self.years
        )

    def next_after(self, t: dt.datetime) -> dt.datetime | None:
        candidate = t.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        for _ in range(366 * 24 * 60):  # a year of minutes at most
            if self.matches(candidate):
                return candidate
            candidate += dt.timedelta(minutes=1)
        return None


def next_delay(expression: str, now: dt.datetime) -> float | None:
    """Seconds until the next tick of ``expression`` after ``now`` (None: never)."""
    rate = _RATE.match(expression.strip())
    if rate:
        amount, unit = int(rate.group(1)), rate.group(2).rstrip("s")
        return float(amount * _UNIT_S[unit])
    cron = _CRON.match(expression.strip())
    if cron:
        nxt = CronExpression(cron.group(1)).next_after(now)
        return None if nxt is None else (nxt - now).total_seconds()
    raise ScheduleExpressionError(f"unsupported schedule expression {expression!r}")


def scheduled_event(rule: str, raw_input: str | None, now: dt.datetime) -> dict[str, Any]:
    """What EventBridge passes the target: the rule's Input if it has one, else a Scheduled Event."""
    if raw_input:
        value: dict[str, Any] = json.loads(raw_input)
        return value
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:000000000000:rule/{rule}"],
        "detail": {},
    }


class ScheduleTimer:
    """Calls ``fire`` at every tick of ``expression`` until stopped."""

    def __init__(self, name: str, expression: str, fire: Callable[[dt.datetime], None]) -> None:
        next_delay(expression, dt.datetime.now(dt.UTC))  # fail at start on an expression we cannot run
        self.name = name
        self.expression = expression
        self._fire = fire
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"schedule:{name}", daemon=True)
        self.ticks = 0

    def start(self) -> ScheduleTimer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            delay = next_delay(self.expression, dt.datetime.now(dt.UTC))
            if delay is None or self._stop.wait(delay):
                return
            self.ticks += 1
            self._fire(dt.datetime.now(dt.UTC))
