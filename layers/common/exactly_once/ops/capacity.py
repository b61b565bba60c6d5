"""The capacity and cost model: for a traffic mix, each component's load, its ceiling, the first bottleneck.

``python -m exactly_once.ops.capacity --events-per-second 500 --duplicate-ratio 0.3`` (docs/capacity.md).
The per-event counts are our measured ones, read from ``bench/results/*.json`` when the repository is at
hand (ingest: DynamoDB writes per unique and per duplicate item and SQS requests per POST, from the Graph
ingest bench; Postgres events/s per worker process, from the Postgres bench), else the defaults below,
which are those results at the time of writing. Ceilings are AWS's published quotas and this template's
settings; prices are AWS's published us-east-1 prices as of ``PRICES_AS_OF`` (docs/capacity.md names the
pages). A model, not a load test: the Postgres rate was measured on localhost, not on Aurora.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[4] / "bench" / "results"

#: us-east-1, USD. Sources and caveats: docs/capacity.md, "Cost per million events".
PRICES_AS_OF = "2026-12-04"
PRICES = {
    "api_per_million_requests": 1.00,  # HTTP API, first 300 million a month
    "lambda_per_million_requests": 0.20,
    "lambda_arm_per_gb_second": 0.0000133334,
    "dynamodb_per_million_writes": 0.625,  # on-demand WRU, after the November 2024 cut
    "sqs_fifo_per_million_requests": 0.50,  # per 64 KB chunk
}


@dataclass(frozen=True)
class Measured:
    """Counts per event from our benches (defaults: bench/results when this was written)."""

    ddb_writes_unique: float = 2.0  # conditional PutItem (INPROGRESS) + UpdateItem (COMPLETED)
    ddb_writes_duplicate: float = 1.0  # the failed PutItem, in another container (0 in the same warm one)
    sqs_sends_per_post: float = 1.0  # one SendMessageBatch per POST that carries a new event
    pg_events_per_s_per_process: float = 494.0  # bundle median 3,954 events/s over 8 processes, 30 % duplicates
    source: str = "defaults"

    @classmethod
    def from_results(cls, results: Path = RESULTS) -> Measured:
        try:
            ingest = json.loads((results / "graph_ingest.json").read_text())["aws_calls"]
            pg = json.loads((results / "pg_worker.json").read_text())
        except (OSError, KeyError, ValueError):
            return cls()
        return cls(
            ddb_writes_unique=float(ingest["unique"]["dynamodb_writes_per_item"]),
            ddb_writes_duplicate=float(ingest["duplicate_new_container"]["dynamodb_writes_per_item"]),
            sqs_sends_per_post=float(ingest["unique"]["sqs_requests_per_post"]),
            pg_events_per_s_per_process=float(pg["median_events_per_s"]["bundle"]) / int(pg["workers"]),
            source=str(results),
        )


@dataclass(frozen=True)
class Mix:
    """The traffic and the stack's settings (template defaults)."""

    events_per_second: float
    duplicate_ratio: float = 0.3
    events_per_post: int = 10  # Graph and WhatsApp batch events in one POST
    worker_batch_size: int = 10  # the events queue's BatchSize (FIFO maximum)
    event_worker_concurrency: int = 20  # EventWorkerConcurrency
    ingest_seconds: float = 0.1  # billed duration of one ingest invocation
    worker_seconds_per_event: float = 0.005  # billed worker time per event (Postgres round trips)
    memory_gb: float = 0.5  # the template's MemorySize
    api_rate_limit: float = 1000.0  # the HttpApi's ThrottlingRateLimit
    ddb_table_write_limit: float = 40_000.0  # on-demand default per-table write throughput quota
    sqs_actions_per_second: float = 70_000.0  # high-throughput FIFO, per action, us-east-1 (non-batched)
    regional_concurrency: int = 1000  # the account's Lambda concurrency (default quota)

    def __post_init__(self) -> None:
        if self.events_per_second <= 0 or not 0 <= self.duplicate_ratio < 1 or self.events_per_post < 1:
            raise ValueError("events per second > 0, 0 <= duplicate ratio < 1, events per POST >= 1")


@dataclass
class Report:
    mix: Mix
    measured: Measured
    load: dict[str, float] = field(default_factory=dict)
    ceilings: dict[str, float] = field(default_factory=dict)  # events/s each component allows
    cost_per_million_events: dict[str, float] = field(default_factory=dict)

    @property
    def bottleneck(self) -> str:
        return min(self.ceilings, key=self.ceilings.__getitem__)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mix": asdict(self.mix),
            "measured": asdict(self.measured),
            "load_per_second": self.load,
            "ceiling_events_per_second": self.ceilings,
            "first_bottleneck": self.bottleneck,
            "cost_per_million_events_usd": self.cost_per_million_events,
            "prices_as_of": PRICES_AS_OF,
        }


#: The connection caps other than the event worker's (docs/capacity.md, DatabaseSchema's ConcurrencyCaps):
#: send worker 10, job worker 5, POST /sends 10, jobs trigger 10, console 5, schedules and migration 4.
OTHER_CONNECTIONS = 10 + 5 + 10 + 10 + 5 + 4


def model(mix: Mix, measured: Measured | None = None) -> Report:
    m = measured or Measured.from_results()
    report = Report(mix, m)
    e, d, k = mix.events_per_second, mix.duplicate_ratio, mix.events_per_post
    unique = e * (1 - d)
    posts = e / k
    # A POST enqueues when at least one of its k events is new (events assumed independent).
    posts_enqueueing = posts * (1 - d**k)
    ddb_per_event = (1 - d) * m.ddb_writes_unique + d * m.ddb_writes_duplicate
    worker_batches = unique / mix.worker_batch_size
    # The event source receives and deletes per batch (Lambda's calls, billed to the queue's owner).
    sqs = posts_enqueueing * m.sqs_sends_per_post + 2 * worker_batches
    worker_concurrency = unique * mix.worker_seconds_per_event
    report.load = {
        "api_requests": posts,
        "ingest_invocations": posts,
        "ingest_concurrency": posts * mix.ingest_seconds,
        "dynamodb_writes": e * ddb_per_event,
        "sqs_requests": sqs,
        "worker_invocations": worker_batches,
        "worker_concurrency": worker_concurrency,
        "postgres_commits": unique,
        "postgres_connections": min(math.ceil(worker_concurrency), mix.event_worker_concurrency) + OTHER_CONNECTIONS,
    }
    new_share = 1 - d
    report.ceilings = {
        "api_rate_limit": mix.api_rate_limit * k,
        "dynamodb_table_writes": mix.ddb_table_write_limit / ddb_per_event,
        "sqs_send_calls": mix.sqs_actions_per_second * k,
        "lambda_account_concurrency": mix.regional_concurrency
        / (mix.ingest_seconds / k + new_share * mix.worker_seconds_per_event),
        "event_worker_concurrency": mix.event_worker_concurrency * m.pg_events_per_s_per_process / new_share,
        "postgres_commits": m.pg_events_per_s_per_process * 8 / new_share,  # the bench's 8 processes
    }
    million = 1_000_000 / e  # seconds of traffic that make a million events
    gb_s = mix.memory_gb * (posts * mix.ingest_seconds + unique * mix.worker_seconds_per_event)
    report.cost_per_million_events = {
        "api": million * posts * PRICES["api_per_million_requests"] / 1e6,
        "lambda": million
        * (
            (posts + worker_batches) * PRICES["lambda_per_million_requests"] / 1e6
            + gb_s * PRICES["lambda_arm_per_gb_second"]
        ),
        "dynamodb": million * e * ddb_per_event * PRICES["dynamodb_per_million_writes"] / 1e6,
        "sqs": million * sqs * PRICES["sqs_fifo_per_million_requests"] / 1e6,
    }
    report.cost_per_million_events["total"] = sum(report.cost_per_million_events.values())
    return report


LIFT = {
    "api_rate_limit": "raise ThrottlingRateLimit on the HttpApi (and the account's API Gateway quota)",
    "dynamodb_table_writes": "ask for a higher per-table on-demand throughput quota",
    "sqs_send_calls": "spread events over more queues (send calls are one per POST already)",
    "lambda_account_concurrency": "raise the account's Lambda concurrency quota",
    "event_worker_concurrency": "raise EventWorkerConcurrency (and DbConnectionBudget, the database's size)",
    "postgres_commits": "a larger Aurora maximum (AuroraMaxCapacity), batch apply, fewer round trips per effect",
}


def render(report: Report) -> str:
    lines = [
        f"mix: {report.mix.events_per_second:g} events/s, {report.mix.duplicate_ratio:.0%} duplicates, "
        f"{report.mix.events_per_post} events per POST (counts: {report.measured.source})",
        "",
        "load per second:",
    ]
    lines += [f"  {name:22s} {value:12,.1f}" for name, value in report.load.items()]
    lines += ["", "ceiling (events/s):"]
    lines += [f"  {name:26s} {value:12,.0f}" for name, value in sorted(report.ceilings.items(), key=lambda i: i[1])]
    first = report.bottleneck
    lines += ["", f"first bottleneck: {first} at {report.ceilings[first]:,.0f} events/s - lift: {LIFT[first]}", ""]
    lines += [
        f"cost per million events (USD, us-east-1, prices of {PRICES_AS_OF}; the database and network at rest apart):"
    ]
    lines += [f"  {name:10s} {value:8.3f}" for name, value in report.cost_per_million_events.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exactly_once.ops.capacity", description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-second", type=float, required=True)
    parser.add_argument("--duplicate-ratio", type=float, default=0.3)
    parser.add_argument("--events-per-post", type=int, default=10)
    parser.add_argument("--event-worker-concurrency", type=int, default=20)
    parser.add_argument("--results", type=Path, default=RESULTS, help="bench/results with our measured counts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    mix = Mix(
        args.events_per_second,
        args.duplicate_ratio,
        args.events_per_post,
        event_worker_concurrency=args.event_worker_concurrency,
    )
    report = model(mix, Measured.from_results(args.results))
    print(json.dumps(report.as_dict(), indent=1) if args.json else render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
