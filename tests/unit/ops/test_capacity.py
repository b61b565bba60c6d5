"""The capacity model: loads scale with the mix, duplicates stop at ingest, the first bottleneck is named."""

from __future__ import annotations

import json

import pytest

from exactly_once.ops import capacity
from exactly_once.ops.capacity import Measured, Mix, model

COUNTS = Measured(ddb_writes_unique=2, ddb_writes_duplicate=1, sqs_sends_per_post=1, pg_events_per_s_per_process=500)


def test_loads_follow_the_measured_counts_per_event():
    # GIVEN 1,000 events/s, 30 % duplicates, 10 events per POST
    report = model(Mix(1000, 0.3, 10), COUNTS)
    load = report.load
    # THEN 100 POSTs; DynamoDB 2 writes per new event and 1 per duplicate; only new events reach Postgres
    assert load["api_requests"] == pytest.approx(100)
    assert load["dynamodb_writes"] == pytest.approx(700 * 2 + 300 * 1)
    assert load["postgres_commits"] == pytest.approx(700)
    assert load["worker_invocations"] == pytest.approx(70)  # batches of 10
    # one SendMessageBatch per POST carrying a new event, plus receive and delete per worker batch
    assert load["sqs_requests"] == pytest.approx(100 * (1 - 0.3**10) + 2 * 70)


def test_the_first_bottleneck_is_the_lowest_ceiling_and_moves_with_the_settings():
    report = model(Mix(1000, 0.3, 10), COUNTS)
    assert report.bottleneck == "postgres_commits"
    assert report.ceilings["postgres_commits"] == pytest.approx(500 * 8 / 0.7)
    # One event per POST (LiveKit-like): the API's 1,000 requests/s come first
    assert model(Mix(1000, 0.3, 1), COUNTS).bottleneck == "api_rate_limit"
    # Two concurrent workers cap the effect path below Postgres
    assert model(Mix(1000, 0.3, 10, event_worker_concurrency=2), COUNTS).bottleneck == "event_worker_concurrency"


def test_cost_per_million_events_does_not_depend_on_the_rate_and_falls_with_duplicates():
    slow, fast = model(Mix(10, 0.3), COUNTS), model(Mix(5000, 0.3), COUNTS)
    assert slow.cost_per_million_events["total"] == pytest.approx(fast.cost_per_million_events["total"])
    # a million all-new events at 10 per POST: 2 million DynamoDB writes at the dated price
    fresh = model(Mix(100, 0.0), COUNTS).cost_per_million_events
    assert fresh["dynamodb"] == pytest.approx(2 * capacity.PRICES["dynamodb_per_million_writes"])
    assert model(Mix(100, 0.5), COUNTS).cost_per_million_events["total"] < fresh["total"]


def test_counts_come_from_the_bench_results(tmp_path):
    (tmp_path / "graph_ingest.json").write_text(
        json.dumps(
            {
                "aws_calls": {
                    "unique": {"dynamodb_writes_per_item": 2.0, "sqs_requests_per_post": 1},
                    "duplicate_new_container": {"dynamodb_writes_per_item": 1.0},
                }
            }
        )
    )
    (tmp_path / "pg_worker.json").write_text(json.dumps({"median_events_per_s": {"bundle": 4000.0}, "workers": 8}))
    measured = Measured.from_results(tmp_path)
    assert measured.pg_events_per_s_per_process == 500 and measured.source == str(tmp_path)
    assert Measured.from_results(tmp_path / "missing").source == "defaults"


def test_the_command_prints_the_bottleneck_and_json(capsys):
    assert capacity.main(["--events-per-second", "200", "--duplicate-ratio", "0.2"]) == 0
    assert "first bottleneck:" in capsys.readouterr().out
    capacity.main(["--events-per-second", "200", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["prices_as_of"] == capacity.PRICES_AS_OF and out["first_bottleneck"] in out["ceiling_events_per_second"]


def test_an_impossible_mix_is_refused():
    with pytest.raises(ValueError):
        Mix(100, 1.0)
