"""The console's per-layer metrics: the window and its buckets, the queries, the bounds, the answer's shape.

CloudWatch is a small fake here (what ListMetrics and GetMetricData answer); the functional test reads
real metrics back from moto.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from exactly_once.core.errors import ConfigurationError, DependencyUnavailableError
from exactly_once.ops.console import metrics

NOW = dt.datetime(2026, 12, 4, 20, 7, 31, tzinfo=dt.UTC)
SERVICE = ("service", "exactly-once")


@pytest.mark.parametrize(
    ("hours", "period", "buckets"),
    [
        (1, 300, 12),
        (6, 300, 72),
        (8, 300, 96),
        (9, 900, 36),
        (24, 900, 96),
        (48, 1800, 96),
        (96, 3600, 96),
        (336, 21600, 56),
    ],
)
def test_the_window_is_whole_periods_ending_with_the_bucket_of_now(hours, period, buckets):
    span = metrics.window(hours, NOW)
    assert (span.period, span.buckets) == (period, buckets)
    # aligned on the period: a reload a minute later draws the same bars
    assert span.start.timestamp() % period == 0 and span.end.timestamp() % period == 0
    assert span.start <= NOW - dt.timedelta(hours=hours) + dt.timedelta(seconds=period)
    assert span.index(NOW) == buckets - 1
    assert span.index(span.start) == 0 and span.index(span.start - dt.timedelta(seconds=1)) is None
    assert span.index(span.end) is None
    assert len(span.starts()) == buckets and span.starts()[1] - span.starts()[0] == dt.timedelta(seconds=period)


def stream(series: str, provider: str) -> metrics.Stream:
    return metrics.Stream(series, provider, tuple(sorted([("provider", provider), SERVICE])))


def test_one_sum_query_per_stream_with_its_exact_dimensions():
    queries = metrics.queries([stream("ingest", "graph"), stream("effects", "slack")], 900)
    assert [q["Id"] for q in queries] == ["m0", "m1"]
    first = queries[0]["MetricStat"]
    assert first["Metric"] == {
        "Namespace": "ExactlyOnce",
        "MetricName": "DuplicatesStoppedIngest",
        "Dimensions": [{"Name": "provider", "Value": "graph"}, {"Name": "service", "Value": "exactly-once"}],
    }
    assert (first["Period"], first["Stat"]) == (900, "Sum")
    assert queries[1]["MetricStat"]["Metric"]["MetricName"] == "EffectsApplied"


def test_values_land_in_their_buckets_summed_across_streams_and_empty_providers_are_left_out():
    span = metrics.window(1, NOW)
    streams = [stream("ingest", "graph"), stream("ingest", "graph"), stream("accepted", "graph"), stream("queue", "x")]
    at = span.starts()
    values = {
        "m0": [(at[2], 2.0), (at[11], 1.0)],
        "m1": [(at[2], 3.0), (span.start - dt.timedelta(minutes=5), 99.0)],  # outside the window: not counted
        "m2": [(at[2], 4.0)],
        "m3": [(at[3], 0.0)],
    }
    found = metrics.bucketed(streams, values, span)
    assert list(found) == ["graph"]
    graph = found["graph"]
    assert graph["totals"] == {"accepted": 4, "ingest": 6, "queue": 0, "database": 0, "effects": 0, "quarantined": 0}
    assert len(graph["buckets"]) == 12 and graph["buckets"][2]["start"] == at[2]
    assert (graph["buckets"][2]["ingest"], graph["buckets"][2]["accepted"], graph["buckets"][11]["ingest"]) == (5, 4, 1)
    assert all(isinstance(v, int) for b in graph["buckets"] for k, v in b.items() if k != "start")


class FakeCloudWatch:
    """ListMetrics pages of one stream each; GetMetricData pages as given."""

    def __init__(self, providers: list[str], data_pages: list[dict[str, Any]] | None = None) -> None:
        self.providers = providers
        self.data_pages = data_pages or [{"MetricDataResults": []}]
        self.list_calls: list[dict[str, Any]] = []
        self.data_calls: list[dict[str, Any]] = []

    def list_metrics(self, **request: Any) -> dict[str, Any]:
        self.list_calls.append(request)
        at = int(request.get("NextToken") or 0)
        wanted = request["Dimensions"][0].get("Value")
        names = [p for p in self.providers if wanted in (None, p)]
        if at >= len(names):
            return {"Metrics": []}
        dims = [{"Name": "provider", "Value": names[at]}, {"Name": "service", "Value": "exactly-once"}]
        page: dict[str, Any] = {"Metrics": [{"MetricName": request["MetricName"], "Dimensions": dims}]}
        if at + 1 < len(names):
            page["NextToken"] = str(at + 1)
        return page

    def get_metric_data(self, **request: Any) -> dict[str, Any]:
        self.data_calls.append(request)
        return self.data_pages[len(self.data_calls) - 1]


def test_discovery_follows_pages_within_bounds_and_keeps_at_most_max_providers(monkeypatch):
    monkeypatch.setattr(metrics, "MAX_PROVIDERS", 2)
    cloudwatch = FakeCloudWatch(["graph", "slack", "whatsapp"])
    streams, truncated = metrics.discover(cloudwatch)
    assert truncated and {s.provider for s in streams} == {"graph", "slack"}
    assert len(streams) == 2 * len(metrics.SERIES)
    # one provider asked for: ListMetrics filters on its value
    only, cut = metrics.discover(FakeCloudWatch(["graph", "slack"]), provider="slack")
    assert not cut and {s.provider for s in only} == {"slack"}


def test_listing_stops_after_max_pages_even_if_cloudwatch_keeps_paging(monkeypatch):
    cloudwatch = FakeCloudWatch([f"p{i}" for i in range(50)])
    metrics.discover(cloudwatch)
    assert len(cloudwatch.list_calls) == metrics.MAX_PAGES * len(metrics.SERIES)


def test_the_answer_follows_next_token_and_reads_one_window():
    at = metrics.window(24, NOW).starts()
    pages = [
        {"MetricDataResults": [{"Id": "m1", "Timestamps": [at[95]], "Values": [2.0]}], "NextToken": "more"},
        {"MetricDataResults": [{"Id": "m1", "Timestamps": [at[94]], "Values": [1.0]}]},
    ]
    cloudwatch = FakeCloudWatch(["graph"], pages)
    answer = metrics.per_layer(lambda: cloudwatch, hours=24, now=NOW)
    assert answer["period_seconds"] == 900 and answer["since"] == at[0] and answer["truncated"] is False
    assert answer["providers"]["graph"]["totals"]["ingest"] == 3  # m1: graph's second series, ingest
    assert [c.get("NextToken") for c in cloudwatch.data_calls] == [None, "more"]
    assert cloudwatch.data_calls[0]["StartTime"] == at[0] and len(cloudwatch.data_calls[0]["MetricDataQueries"]) == 6


def test_no_metric_at_all_is_an_empty_answer_without_a_data_call():
    cloudwatch = FakeCloudWatch([])
    answer = metrics.per_layer(lambda: cloudwatch, hours=6, now=NOW)
    assert answer["providers"] == {} and cloudwatch.data_calls == []


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ListMetrics"), ConfigurationError),
        (ClientError({"Error": {"Code": "Throttling", "Message": "slow"}}, "ListMetrics"), DependencyUnavailableError),
        (EndpointConnectionError(endpoint_url="https://monitoring"), DependencyUnavailableError),
    ],
)
def test_cloudwatch_failures_become_the_consoles_errors(error, raised):
    class Failing:
        def list_metrics(self, **_: Any) -> dict[str, Any]:
            raise error

    with pytest.raises(raised):
        metrics.per_layer(Failing, hours=1, now=NOW)


def test_a_console_without_a_cloudwatch_client_says_it_is_not_configured():
    with pytest.raises(ConfigurationError):
        metrics.per_layer(None, hours=1, now=NOW)
