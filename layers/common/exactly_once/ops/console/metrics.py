"""``GET /console/api/metrics``: per provider, what each layer let through and stopped, over time.

The ingest layer's duplicates (the DynamoDB idempotency record said "already delivered") leave no row in
Postgres: they exist only as the ``DuplicatesStoppedIngest`` metric. So the console reads the bundle's own
EMF metrics back from CloudWatch (``telemetry.counters``: namespace ``ExactlyOnce``, dimensions ``provider``
and ``service``), the Sum per period, per provider and series:

    accepted     EventsAccepted               events the ingest put on the queue
    ingest       DuplicatesStoppedIngest      stopped by the DynamoDB idempotency record
    queue        DuplicatesStoppedQueue       stopped by the worker's event log (FIFO dedup id, already handled)
    database     DuplicatesStoppedDatabase    stopped by the Postgres claim or unique constraint
    effects      EffectsApplied               effects made
    quarantined  Quarantined                  set aside for a person

Which providers (and ``service`` values) exist comes from ``ListMetrics``, one bounded call per series;
the numbers from one ``GetMetricData`` call (paged, bounded). Periods are whole multiples of 5 minutes,
at most ``MAX_BUCKETS`` per window, aligned on the period so every reload draws the same buckets. Locally
``devstack.emf_relay`` puts the lines the functions print into moto's CloudWatch, as Lambda's log
pipeline does, so ``make run`` answers the same way.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exactly_once.core.errors import ConfigurationError, DependencyUnavailableError
from exactly_once.core.telemetry import NAMESPACE, Metric

SERIES: dict[str, str] = {
    "accepted": Metric.ACCEPTED,
    "ingest": Metric.DUP_INGEST,
    "queue": Metric.DUP_QUEUE,
    "database": Metric.DUP_DATABASE,
    "effects": Metric.EFFECTS,
    "quarantined": Metric.QUARANTINED,
}
LAYERS = ("ingest", "queue", "database")
ORDER = {name: i for i, name in enumerate(SERIES)}
PERIODS = (300, 900, 1800, 3600, 3 * 3600, 6 * 3600)  # CloudWatch keeps 5-minute data 63 days
MAX_BUCKETS = 96
MAX_HOURS = 24 * 14
MAX_PROVIDERS = 25
MAX_QUERIES = 500  # GetMetricData's own limit per request
MAX_PAGES = 10  # per ListMetrics series and for GetMetricData: a bounded read, never a scan
DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")


@dataclass(frozen=True)
class Window:
    """``buckets`` periods of ``period`` seconds from ``start``; the last one holds now."""

    start: dt.datetime
    period: int
    buckets: int

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self.period * self.buckets)

    def index(self, when: dt.datetime) -> int | None:
        """The bucket ``when`` falls in, or None outside the window."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        slot = math.floor((when - self.start).total_seconds() / self.period)
        return slot if 0 <= slot < self.buckets else None

    def starts(self) -> list[dt.datetime]:
        return [self.start + dt.timedelta(seconds=self.period * i) for i in range(self.buckets)]


def window(hours: int, now: dt.datetime) -> Window:
    """The smallest period that draws ``hours`` in at most ``MAX_BUCKETS`` bars, ending with now's bucket."""
    seconds = hours * 3600
    period = next((p for p in PERIODS if seconds / p <= MAX_BUCKETS), PERIODS[-1])
    buckets = min(MAX_BUCKETS, math.ceil(seconds / period))
    epoch = int(now.timestamp())
    end = (epoch // period + 1) * period
    return Window(dt.datetime.fromtimestamp(end - buckets * period, dt.UTC), period, buckets)


@dataclass(frozen=True)
class Stream:
    """One metric CloudWatch holds: a series of one provider under one exact set of dimensions."""

    series: str
    provider: str
    dimensions: tuple[tuple[str, str], ...]


def discover(cloudwatch: Any, *, provider: str | None = None) -> tuple[list[Stream], bool]:
    """The streams of every series that carry a ``provider`` dimension; True when some were left out."""
    found: list[Stream] = []
    for series, name in SERIES.items():
        token: str | None = None
        for _ in range(MAX_PAGES):
            dimension: dict[str, str] = (
                {"Name": "provider"} if provider is None else {"Name": "provider", "Value": provider}
            )
            request: dict[str, Any] = {"Namespace": NAMESPACE, "MetricName": name, "Dimensions": [dimension]}
            if token:
                request["NextToken"] = token
            page = cloudwatch.list_metrics(**request)
            for metric in page.get("Metrics", []):
                dims = tuple(sorted((str(d["Name"]), str(d["Value"])) for d in metric.get("Dimensions", [])))
                named = dict(dims).get("provider")
                if named:
                    found.append(Stream(series, named, dims))
            token = page.get("NextToken")
            if not token:
                break
    return _bounded(sorted(set(found), key=lambda s: (s.provider, ORDER[s.series], s.dimensions)))


def _bounded(streams: list[Stream]) -> tuple[list[Stream], bool]:
    providers = sorted({s.provider for s in streams})
    kept = set(providers[:MAX_PROVIDERS])
    bounded = [s for s in streams if s.provider in kept][:MAX_QUERIES]
    return bounded, len(bounded) < len(streams)


def queries(streams: list[Stream], period: int) -> list[dict[str, Any]]:
    """One MetricStat query (Sum per period) per stream; ids ``m0``, ``m1``... index ``streams``."""
    return [
        {
            "Id": f"m{i}",
            "MetricStat": {
                "Metric": {
                    "Namespace": NAMESPACE,
                    "MetricName": SERIES[s.series],
                    "Dimensions": [{"Name": k, "Value": v} for k, v in s.dimensions],
                },
                "Period": period,
                "Stat": "Sum",
            },
            "ReturnData": True,
        }
        for i, s in enumerate(streams)
    ]


def fetch(cloudwatch: Any, requests: list[dict[str, Any]], span: Window) -> dict[str, list[tuple[dt.datetime, float]]]:
    """Every query's (timestamp, value) pairs, following NextToken a bounded number of times."""
    values: dict[str, list[tuple[dt.datetime, float]]] = {}
    if not requests:
        return values
    token: str | None = None
    for _ in range(MAX_PAGES):
        request: dict[str, Any] = {
            "MetricDataQueries": requests,
            "StartTime": span.start,
            "EndTime": span.end,
            "ScanBy": "TimestampAscending",
        }
        if token:
            request["NextToken"] = token
        page = cloudwatch.get_metric_data(**request)
        for result in page.get("MetricDataResults", []):
            pairs = zip(result.get("Timestamps", []), result.get("Values", []), strict=False)
            values.setdefault(str(result["Id"]), []).extend((t, float(v)) for t, v in pairs)
        token = page.get("NextToken")
        if not token:
            break
    return values


def bucketed(streams: list[Stream], values: dict[str, list[tuple[dt.datetime, float]]], span: Window) -> dict[str, Any]:
    """Per provider: the totals and every bucket of the window (zeros included), each series a whole number."""
    providers: dict[str, dict[str, Any]] = {}
    for i, stream in enumerate(streams):
        points = values.get(f"m{i}", [])
        if not points:
            continue
        entry = providers.get(stream.provider)
        if entry is None:
            entry = providers[stream.provider] = {
                "totals": dict.fromkeys(SERIES, 0.0),
                "buckets": [{"start": start, **dict.fromkeys(SERIES, 0.0)} for start in span.starts()],
            }
        for when, value in points:
            slot = span.index(when)
            if slot is None:
                continue
            entry["buckets"][slot][stream.series] += value
            entry["totals"][stream.series] += value
    for entry in providers.values():
        _whole(entry["totals"])
        for bucket in entry["buckets"]:
            _whole(bucket)
    return {p: e for p, e in sorted(providers.items()) if any(e["totals"].values())}


def _whole(counts: dict[str, Any]) -> None:
    for name in SERIES:
        counts[name] = round(counts[name])


def per_layer(
    cloudwatch: Callable[[], Any] | None, *, hours: int, provider: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The answer of ``GET metrics``: the window, the series' metric names, and each provider's buckets."""
    from botocore.exceptions import BotoCoreError, ClientError

    if cloudwatch is None:
        raise ConfigurationError("the console was given no CloudWatch client: it cannot read the metrics")
    span = window(hours, now or dt.datetime.now(dt.UTC))
    try:
        client = cloudwatch()
        streams, truncated = discover(client, provider=provider)
        values = fetch(client, queries(streams, span.period), span)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in DENIED:
            raise ConfigurationError(
                "the console function may not read CloudWatch (cloudwatch:ListMetrics, cloudwatch:GetMetricData)"
            ) from exc
        raise DependencyUnavailableError("CloudWatch did not answer", exc) from exc
    except BotoCoreError as exc:
        raise DependencyUnavailableError("CloudWatch did not answer", exc) from exc
    return {
        "window_hours": hours,
        "since": span.start,
        "until": span.end,
        "period_seconds": span.period,
        "namespace": NAMESPACE,
        "series": SERIES,
        "layers": list(LAYERS),
        "providers": bucketed(streams, values, span),
        "truncated": truncated,
    }
