"""Chaos: throughput and ack latency of a storm as the fault rate grows, as ratios to the fault-free storm.

The same storm as ``tests/chaos`` (N events x K copies from spawned sandboxes through the real ingest handler,
the event worker polling meanwhile) at 0%, 1%, 5% and 20% faults, in one process, one database and one moto:
AWS throttles, 500s, lost answers and self-kills at the rate, the providers' fakes failing and hanging at the
rate; above 0% also the harness's Postgres terminations and held locks and one SIGKILL. Throughput is the
storm's deliveries (copies and the quick retries) per second of storm (the sandboxes' loading excluded); ack
latency is each delivery's answer time. Every run must still end with one effect per event (the chaos
invariants). A refusal (503: a throttled dedup write, a locked table) is the bundle declining work rather than
risking a double effect; its share is reported per rate.

    .venv/bin/python -m bench.chaos_bench
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import psycopg

from bench.common import median, percentile, table, write_result
from devstack.aws_local import LocalAws
from devstack.fakes import FakeProviders
from devstack.moto_server import SerializedMotoServer
from tests.harness import Stack, stack_env

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
RATES = (0.0, 0.01, 0.05, 0.20)
FLOWS = ("standard", "whatsapp")
EVENTS, COPIES = 30, 3


def _empty(conn: psycopg.Connection[Any]) -> None:
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
        )
    ]
    conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")


def one(stack: Stack, conn: psycopg.Connection[Any], url: str, flow: Any, rate: float, seed: int) -> dict[str, Any]:
    from exactly_once.core import db
    from tests.chaos import invariants, storm

    # The recovery's reapers run here on the library's cached connection: drop the last run's, which the
    # harness's pg_terminate_backend (it ends every app session) would otherwise have left broken.
    db.reset()
    _empty(conn)
    stack.reset()
    settings = storm.Settings(
        seed=seed, events=EVENTS, copies=COPIES, processes=2, threads=3, rate=rate,
        kills=1 if rate else 0, pg_every=0.4 if rate else 3600.0,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as work:
        outcome = storm.run(stack, conn, url, flow, settings, Path(work))
    eids = [f"chaos-{flow.name}-{seed}-{i}" for i in range(EVENTS)]
    invariants.check(stack, conn, flow, eids, outcome)
    acks = outcome.ack_seconds
    return {
        "rate": rate,
        "deliveries_in_storm": outcome.storm_deliveries,
        "storm_seconds": outcome.storm_seconds,
        "deliveries_per_s": outcome.storm_deliveries / max(outcome.storm_seconds, 0.001),
        "ack_p50_ms": 1000 * median(acks),
        "ack_p99_ms": 1000 * percentile(acks, 99),
        "refused_share": outcome.refused / max(outcome.deliveries, 1),
        "faults": dict(outcome.faults),
        "kills": outcome.kills,
        "restarts": outcome.restarts,
        "pg_terminated": outcome.pg_terminated,
        "effects": outcome.effects,
        "summary": outcome.summary(),
    }


def main() -> None:
    from exactly_once.ops.migrate import migrate
    from tests.chaos.flows import FLOWS as ALL

    name = f"eo_bench_chaos_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    moto = SerializedMotoServer().start()
    fakes = FakeProviders().start()
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        local = LocalAws(moto.url).provision()
        env = {**stack_env(local, fakes, url), "POWERTOOLS_LOG_LEVEL": "CRITICAL", "SEND_RELAY_GRACE_SECONDS": "0"}
        env["SEND_RECONCILE_AFTER_SECONDS"] = "0"  # the storm is over when the recovery reconciles
        env["CHAOS_RETRY_DELAY"] = "1"  # a failed message waits 1 s, not 0, before the next receive (storm.py)
        os.environ.update(env)
        stack = Stack(local, fakes, env)
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
            for flow in (f for f in ALL if f.name in FLOWS):
                os.environ.update(flow.env)
                runs = [one(stack, conn, url, flow, rate, 20 + n) for n, rate in enumerate(RATES)]
                base = runs[0]
                for r in runs:
                    r["throughput_ratio"] = r["deliveries_per_s"] / base["deliveries_per_s"]
                    r["ack_p50_ratio"] = r["ack_p50_ms"] / base["ack_p50_ms"]
                    r["ack_p99_ratio"] = r["ack_p99_ms"] / base["ack_p99_ms"]
                results[flow.name] = runs
    finally:
        fakes.stop()
        moto.stop()
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    write_result("chaos", {"events": EVENTS, "copies": COPIES, "flows": results})
    for flow_name, runs in results.items():
        print(
            table(
                [
                    (
                        f"{r['rate']:.0%}",
                        f"{r['deliveries_per_s']:.1f}",
                        f"{r['throughput_ratio']:.2f}",
                        f"{r['ack_p50_ms']:.0f} / {r['ack_p99_ms']:.0f}",
                        f"{r['ack_p50_ratio']:.2f} / {r['ack_p99_ratio']:.2f}",
                        f"{r['refused_share']:.0%}",
                        r["effects"],
                    )
                    for r in runs
                ],
                (
                    f"{flow_name}: {EVENTS} x {COPIES}, fault rate",
                    "deliveries/s",
                    "x 0%",
                    "ack p50 / p99 ms",
                    "x 0%",
                    "refused",
                    "effects",
                ),
            )
        )
        print()


if __name__ == "__main__":
    main()
