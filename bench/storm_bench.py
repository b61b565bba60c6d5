"""The duplicate storm through the local stack, and the naive check-then-insert baseline, in one run.

A stack starts in a child process (free ports, fresh state, a database of its own);
the storm sends N unique Graph mails x K identical deliveries from C concurrent
clients (copies back to back so they race, the last copy later), waits for the
workers, and counts tickets per mail in Postgres. The same storm then hits the
naive processor. What dominates the time comes from the stack's own counters:
seconds the serialised moto held its lock, and the functions' busy seconds.

    .venv/bin/python -m bench.storm_bench [--events 1000 --copies 3 --clients 32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.common import table, write_result
from devstack import launcher
from devstack.demo import storm_all
from devstack.lambda_runtime import add_code_paths

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    add_code_paths()
    db_name = f"eo_storm_bench_{int(time.time())}"
    with tempfile.TemporaryDirectory(prefix="eo-storm-") as tmp:
        extra = {"LOCAL_DB_NAME": db_name, "DATABASE_URL": "", "LOCAL_NO_SCHEDULES": "1", "LOCAL_POLLERS": "2"}
        try:
            with launcher.child_stack(state_dir=Path(tmp), extra_env=extra) as stack:
                before = launcher.get_json(stack.url + "/local/state")
                results, _ = storm_all(
                    stack.url,
                    stack.parameters(),
                    events=args.events,
                    copies=args.copies,
                    clients=args.clients,
                    modes=[False, True],
                    graph_updated=False,
                    quiet=True,
                    only={"graph"},
                )
                after = launcher.get_json(stack.url + "/local/state")
        finally:
            with psycopg.connect(ADMIN, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name)))
    summaries = [r.summary() for r in results]
    rows = []
    for s in summaries:
        effects = s["effects_per_event"]
        rows.append(
            (
                s["mode"],
                s["deliveries"],
                s["deliveries_per_s"],
                s["ack_ms"]["p50"],
                s["ack_ms"]["p99"],
                " ".join(f"{k}x:{v}" for k, v in effects.items()),
                s["extra_effects"],
                s["lost"],
                s["http_errors"],
            )
        )
    header = ("mode", "deliveries", "deliv/s", "ack p50 ms", "ack p99 ms", "effects/event", "dup effects", "lost")
    print(table([r[:-1] for r in rows], header))
    exactly, naive = summaries[0], summaries[1]
    aws_calls = after["aws"]["calls"] - before["aws"]["calls"]
    aws_busy = after["aws"]["busy_seconds"] - before["aws"]["busy_seconds"]
    functions = _function_seconds(before, after)
    breakdown = {
        "storm_seconds": exactly["seconds"],
        "aws_calls": aws_calls,
        "aws_busy_seconds": round(aws_busy, 2),
        "aws_busy_share_of_storm": round(aws_busy / exactly["seconds"], 2) if exactly["seconds"] else None,
        "aws_ms_per_call": round(1000 * aws_busy / aws_calls, 2) if aws_calls else None,
        "aws_calls_per_delivery": round(aws_calls / exactly["deliveries"], 2),
        "function_seconds": functions,
    }
    print()
    print(
        f"exactly-once storm: {exactly['seconds']} s; the serialised moto was busy {breakdown['aws_busy_seconds']} s "
        f"({breakdown['aws_busy_share_of_storm']} of it) for {aws_calls} calls "
        f"({breakdown['aws_ms_per_call']} ms each, {breakdown['aws_calls_per_delivery']} per delivery)"
    )
    print("function busy seconds: " + ", ".join(f"{k} {v}" for k, v in functions.items()))
    print(
        f"throughput ratio exactly-once / naive: {exactly['deliveries_per_s'] / naive['deliveries_per_s']:.2f}; "
        f"duplicate effects: exactly-once {exactly['extra_effects']}, naive {naive['extra_effects']}"
    )
    path = write_result(
        "storm",
        {
            "events": args.events,
            "copies": args.copies,
            "clients": args.clients,
            "results": summaries,
            "time_breakdown": breakdown,
        },
    )
    print(f"wrote {path}")


def _function_seconds(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    out = {}
    for name, stats in after.get("functions", {}).items():
        prev = before.get("functions", {}).get(name, {}).get("seconds", 0.0)
        out[name] = round(stats["seconds"] - prev, 2)
    return out


if __name__ == "__main__":
    main()
