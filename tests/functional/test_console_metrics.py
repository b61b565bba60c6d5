"""``GET /console/api/metrics`` on the test stack: a real duplicate storm through the Graph handlers, the EMF
lines they print put into moto's CloudWatch by the local stack's relay (as Lambda's log pipeline would),
read back by the console function with ListMetrics and GetMetricData.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from devstack import emf_relay
from devstack.aws_local import boto_client
from tests.graph_support import add_mail, body, forget_ingest, item, post
from tests.harness import Stack

BASE = "http://local/console/api/"


def relay_what_was_printed(stack: Stack, printed: str) -> None:
    """The functions' stdout through the relay into moto, as ``make run`` does it."""
    cloudwatch = boto_client("cloudwatch", stack.aws.endpoint)
    relay = emf_relay.EmfRelay(
        io.StringIO(), lambda ns, data: cloudwatch.put_metric_data(Namespace=ns, MetricData=data)
    )
    relay.write(printed)
    assert relay.send() > 0


def metrics(stack: Stack, query: str) -> tuple[int, Any]:
    answer = stack.invoke_http("ConsoleFunction", "GET", BASE + "metrics" + query)
    return answer.status, answer.json()


def test_a_duplicate_storm_is_counted_per_layer_over_time(stack, capsys, monkeypatch):
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    printed = []
    # GIVEN a mail whose notification Graph delivers three times, then an "updated" one for the same mail
    add_mail(stack, "m1", "<m1@example.com>")
    capsys.readouterr()
    for _ in range(3):
        post(stack, body(item("m1")))
    post(stack, body(item("m1", change="updated", etag='W/"etag-2"')))
    stack.drain()
    printed.append(capsys.readouterr().out)
    # AND a re-delivery past the ingest record (expired): the worker's event log stops it
    forget_ingest(stack)
    post(stack, body(item("m1")))
    stack.drain()
    printed.append(capsys.readouterr().out)
    # WHEN what the functions printed reaches CloudWatch and the console asks for the last hour
    relay_what_was_printed(stack, "".join(printed))
    status, answer = metrics(stack, "?hours=1")
    # THEN each layer's count is there, per provider, in the bucket of now
    assert status == 200, answer
    assert answer["period_seconds"] == 300 and answer["window_hours"] == 1
    graph = answer["providers"]["graph"]
    assert graph["totals"] == {"accepted": 3, "ingest": 2, "queue": 1, "database": 1, "effects": 1, "quarantined": 0}
    assert len(graph["buckets"]) == 12
    counted = [b for b in graph["buckets"] if any(v for k, v in b.items() if k != "start")]
    assert 1 <= len(counted) <= 2  # a storm across a 5-minute boundary lands in two buckets
    assert sum(b["ingest"] for b in counted) == 2
    assert graph["buckets"][-1]["start"] <= answer["until"]
    # AND a provider without metrics answers an empty window, not an error
    status, empty = metrics(stack, "?hours=1&provider=slack")
    assert status == 200 and empty["providers"] == {}


@pytest.mark.parametrize(
    ("query", "code"),
    [("?hours=0", "invalid_hours"), ("?hours=337", "invalid_hours"), ("?provider=Graph%3B", "invalid_provider")],
)
def test_bad_parameters_are_a_400(stack, query, code):
    status, answer = metrics(stack, query)
    assert status == 400 and answer["error"] == code


def test_cloudwatch_out_of_reach_is_a_503_the_page_can_say(stack, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    status, answer = metrics(stack, "?hours=1")
    assert status == 503 and answer["error"] == "unavailable"
