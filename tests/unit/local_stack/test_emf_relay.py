"""The local stack's log pipeline: the EMF lines telemetry prints become PutMetricData datums, the rest passes."""

from __future__ import annotations

import io
import threading
from contextlib import redirect_stdout
from typing import Any

from devstack import emf_relay
from exactly_once.core.telemetry import NAMESPACE, Counters, Metric


def printed_by_counters() -> list[str]:
    """What the functions print at the end of an invocation: one EMF line per provider."""
    counters = Counters()
    counters.incr("graph", Metric.DUP_INGEST)
    counters.incr("graph", Metric.DUP_INGEST)  # the same name twice: Powertools prints a list of values
    counters.incr("graph", Metric.ACCEPTED, 3)
    counters.incr("slack", Metric.EFFECTS)
    out = io.StringIO()
    with redirect_stdout(out):
        counters.flush()
    return out.getvalue().splitlines()


def test_an_emf_line_becomes_one_datum_per_value_with_its_dimensions(monkeypatch):
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    lines = printed_by_counters()
    assert len(lines) == 2
    found = [d for line in lines for d in emf_relay.datums(line) or []]
    assert {ns for ns, _ in found} == {NAMESPACE}
    graph_ingest = [d for _, d in found if d["MetricName"] == Metric.DUP_INGEST]
    assert [d["Value"] for d in graph_ingest] == [1.0, 1.0]
    assert sorted((x["Name"], x["Value"]) for x in graph_ingest[0]["Dimensions"]) == [
        ("provider", "graph"),
        ("service", "exactly-once"),
    ]
    assert [d["Value"] for _, d in found if d["MetricName"] == Metric.ACCEPTED] == [3.0]
    assert emf_relay.datums("not json") is None and emf_relay.datums('{"_aws": broken') is None
    assert emf_relay.datums('{"level":"INFO","message":"hello"}') is None


def test_the_aggregator_sums_per_metric_and_minute(monkeypatch):
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    aggregator = emf_relay.Aggregator()
    for line in printed_by_counters() * 2:
        aggregator.add(emf_relay.datums(line) or [])
    batches = aggregator.drain()
    stats = {d["MetricName"]: d["StatisticValues"] for d in batches[NAMESPACE]}
    assert stats[Metric.DUP_INGEST] == {"SampleCount": 4, "Sum": 4.0, "Minimum": 1.0, "Maximum": 1.0}
    assert stats[Metric.ACCEPTED]["Sum"] == 6.0
    assert aggregator.drain() == {}


def test_the_relay_takes_emf_lines_off_stdout_and_keeps_each_threads_lines_whole(monkeypatch):
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    emf = printed_by_counters()
    put: list[tuple[str, list[dict[str, Any]]]] = []
    terminal = io.StringIO()
    relay = emf_relay.EmfRelay(terminal, lambda ns, data: put.append((ns, data)), every_s=60)

    def printing(n: int) -> None:
        for _ in range(50):
            # as print does: the text, then the newline, in two writes
            relay.write(emf[0])
            relay.write("\n")
            relay.write(f"plain line {n}")
            relay.write("\n")

    threads = [threading.Thread(target=printing, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert relay.relayed == 200
    assert sorted(set(terminal.getvalue().splitlines())) == [f"plain line {n}" for n in range(4)]
    relay.write("progress: 50%")
    relay.flush()
    assert terminal.getvalue().endswith("progress: 50%")
    assert relay.send() > 0
    summed = {d["MetricName"]: d["StatisticValues"]["Sum"] for _, data in put for d in data}
    assert summed[Metric.DUP_INGEST] == 400.0 and summed[Metric.ACCEPTED] == 600.0
