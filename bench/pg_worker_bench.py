"""The Postgres worker path: mail -> ticket events/s with 8 worker processes and 30% duplicates.

Side by side, in one run, on one server and one fresh database:

- ``seed000``: the Graph mail incident's fix: a session advisory lock, three
  separate duplicate checks (tickets, comments, quarantine), the insert, the unlock;
  every statement its own round trip in autocommit;
- ``bundle``: ``exactly_once.flows.graph.tickets.apply_mail``, the Graph worker's own code for one
  event: one statement in autocommit calling ``eo_apply_mail`` (xact locks, the guarded
  INSERT .. ON CONFLICT, the event log row), so one round trip and one commit per event;
- ``bundle_batch``: ``exactly_once.flows.graph.tickets.apply_mails`` over batches of 10, what the worker
  does with an SQS batch (the template's BatchSize): every lock first in one global order,
  then the same effect per mail, one round trip and one commit per batch;
- ``pgbench``: pgbench's single-row INSERT with the same 8 clients: the ceiling.

Duplicates are a later notification of a mail already in the list (a different
event, same internetMessageId), spread over the processes so they race. Both
paths must end with exactly one ticket per mail.

    .venv/bin/python -m bench.pg_worker_bench [--events 8000 --workers 8 --rounds 1]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.common import median, table, write_result
from devstack.lambda_runtime import add_code_paths

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BATCH = 10  # the event worker's SQS BatchSize in template.yaml
_SQL = Path(__file__).with_name("sql") / "pg_worker.sql"
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def queries() -> dict[str, str]:
    parts = _NAME.split(_SQL.read_text(encoding="utf-8"))
    return {name: body.strip().rstrip(";") for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def workload(events: int, dup_share: float, seed: int = 7) -> list[tuple[int, int]]:
    """(mail, copy) pairs: ``events`` in all, ``dup_share`` of them later copies of earlier mails."""
    rng = random.Random(seed)
    mails = round(events * (1 - dup_share))
    items = [(m, 0) for m in range(mails)]
    copies: dict[int, int] = {}
    for _ in range(events - mails):
        m = rng.randrange(mails)
        copies[m] = copies.get(m, 0) + 1
        items.append((m, copies[m]))
    # A duplicate lands near its original, so the worker processes race on it.
    items.sort(key=lambda it: (it[0] + rng.random() * 16, it[1]))
    return items


def _params(run: str, mail: int) -> dict[str, Any]:
    return {
        "message_id": f"<{run}-{mail}@bench.local>",
        "conversation_id": f"conv-{run}-{mail}",
        "mailbox": "bench@example.com",
        "graph_message_id": f"AAMk{run}{mail}",
        "subject": "Printer on fire",
        "sender": "alice@example.com",
        "preview": "Hello helpdesk",
    }


def worker(variant: str, url: str, run: str, items: list[tuple[int, int]], ready: Any, go: Any, out: Any) -> None:
    add_code_paths()
    from exactly_once.core.events import InboundEvent
    from exactly_once.flows.graph.client import MailMessage
    from exactly_once.flows.graph.tickets import apply_mail, apply_mails

    q = queries()
    outcomes: dict[str, int] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT 1")
        ready.wait()
        go.wait()

        def effect(mail: int, copy: int) -> tuple[MailMessage, InboundEvent, str]:
            p = _params(run, mail)
            message = MailMessage(
                p["graph_message_id"],
                p["message_id"],
                p["conversation_id"],
                p["subject"],
                p["sender"],
                p["preview"],
                (),
            )
            return message, InboundEvent("graph", f"graph:bench:{run}:{mail}:{copy}", "g", "created", {}), p["mailbox"]

        if variant == "bundle_batch":
            for start in range(0, len(items), BATCH):
                for result in apply_mails(conn, [effect(m, c) for m, c in items[start : start + BATCH]]):
                    outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
            out.put(outcomes)
            return
        for mail, copy in items:
            p = _params(run, mail)
            if variant == "bundle":
                outcome = apply_mail(conn, *effect(mail, copy)).outcome
            else:
                conn.execute(q["seed_lock"], p)
                try:
                    found = (
                        conn.execute(q["seed_check_tickets"], p).fetchone()
                        or conn.execute(q["seed_check_comments"], p).fetchone()
                        or conn.execute(q["seed_check_quarantine"], p).fetchone()
                    )
                    if found:
                        outcome = "duplicate"
                    else:
                        conn.execute(q["seed_insert"], p)
                        outcome = "ticket"
                finally:
                    conn.execute(q["seed_unlock"], p)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    out.put(outcomes)


def run_variant(variant: str, url: str, items: list[tuple[int, int]], workers: int) -> dict[str, Any]:
    run = f"{variant}{int(time.time() * 1000) % 10_000_000}"
    ctx = mp.get_context("fork")
    ready, go, out = ctx.Barrier(workers + 1), ctx.Event(), ctx.Queue()
    shares = [items[i::workers] for i in range(workers)]
    procs = [ctx.Process(target=worker, args=(variant, url, run, s, ready, go, out)) for s in shares]
    for p in procs:
        p.start()
    ready.wait()
    started = time.perf_counter()
    go.set()
    outcomes: dict[str, int] = {}
    for _ in procs:
        for k, v in out.get(timeout=300).items():
            outcomes[k] = outcomes.get(k, 0) + v
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()
    with psycopg.connect(url) as conn:
        tickets = conn.execute(
            "SELECT count(*), count(DISTINCT external_message_id) FROM tickets WHERE conversation_id LIKE %s",
            (f"conv-{run}-%",),
        ).fetchone()
    assert tickets is not None
    return {
        "events_per_s": round(len(items) / elapsed, 1),
        "seconds": round(elapsed, 2),
        "outcomes": outcomes,
        "tickets": tickets[0],
        "distinct_mails": tickets[1],
    }


def pgbench(dbname: str, clients: int, seconds: int) -> float:
    binary = shutil.which("pgbench")
    if binary is None:
        raise RuntimeError("pgbench is not installed")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write("INSERT INTO bench_single_insert (k, v) VALUES (:client_id, 'x');\n")
        script = f.name
    pgbench_args = [binary, "-n", "-h", "127.0.0.1", "-U", "postgres"]
    out = subprocess.run(
        [*pgbench_args, "-c", str(clients), "-j", str(min(clients, 4)), "-T", str(seconds), "-f", script, dbname],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    Path(script).unlink()
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    if match is None:
        raise RuntimeError(f"unexpected pgbench output:\n{out}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=8_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--dup-share", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--pgbench-seconds", type=int, default=8)
    args = parser.parse_args()
    add_code_paths()
    from exactly_once.ops.migrate import migrate

    dbname = f"eo_pg_worker_bench_{int(time.time())}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    url = ADMIN.rsplit("/", 1)[0] + "/" + dbname
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
            conn.execute(queries()["ceiling_table"])
        items = workload(args.events, args.dup_share)
        runs: dict[str, list[dict[str, Any]]] = {"seed000": [], "bundle": [], "bundle_batch": []}
        ceiling: list[float] = []
        for _ in range(args.rounds):  # interleaved, so a noisy neighbour hits every variant alike
            for variant, results in runs.items():
                results.append(run_variant(variant, url, items, args.workers))
            ceiling.append(pgbench(dbname, args.workers, args.pgbench_seconds))
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))

    mails = round(args.events * (1 - args.dup_share))
    seed_eps = round(median([r["events_per_s"] for r in runs["seed000"]]), 1)
    bundle_eps = round(median([r["events_per_s"] for r in runs["bundle"]]), 1)
    batch_eps = round(median([r["events_per_s"] for r in runs["bundle_batch"]]), 1)
    pgbench_tps = round(median(ceiling), 1)
    rows = [
        ("seed000 (session lock, 3 checks, insert, unlock)", seed_eps, "1.00", _ok(runs["seed000"], mails)),
        (
            "bundle (apply_mail: one statement, locks inside)",
            bundle_eps,
            f"{bundle_eps / seed_eps:.2f}",
            _ok(runs["bundle"], mails),
        ),
        (
            f"bundle, SQS batches of {BATCH} (apply_mails: one statement, one commit)",
            batch_eps,
            f"{batch_eps / seed_eps:.2f}",
            _ok(runs["bundle_batch"], mails),
        ),
        ("pgbench single-row INSERT (ceiling)", pgbench_tps, f"{pgbench_tps / seed_eps:.2f}", "-"),
    ]
    print(table(rows, ("path", "events/s (median)", "x seed000", "one ticket per mail")))
    print(
        f"\nthe worker's path (batches of {BATCH}) = {batch_eps / seed_eps:.2f}x seed000 (goal >= 3), "
        f"{batch_eps / pgbench_tps:.2f} of the pgbench ceiling (goal >= 0.5); one event at a time: "
        f"{bundle_eps / seed_eps:.2f}x, {bundle_eps / pgbench_tps:.2f}; "
        f"{args.workers} processes, {args.events} events, {args.dup_share:.0%} duplicates, {args.rounds} rounds"
    )
    path = write_result(
        "pg_worker",
        {
            "events": args.events,
            "workers": args.workers,
            "dup_share": args.dup_share,
            "rounds": args.rounds,
            "seed000": runs["seed000"],
            "bundle": runs["bundle"],
            "bundle_batch": runs["bundle_batch"],
            "batch_size": BATCH,
            "load_average_at_end": list(os.getloadavg()),
            "pgbench_tps": ceiling,
            "median_events_per_s": {
                "seed000": seed_eps,
                "bundle": bundle_eps,
                "bundle_batch": batch_eps,
                "pgbench": pgbench_tps,
            },
            "ratios": {
                "bundle_vs_seed000": round(bundle_eps / seed_eps, 2),
                "bundle_vs_pgbench": round(bundle_eps / pgbench_tps, 2),
                "bundle_batch_vs_seed000": round(batch_eps / seed_eps, 2),
                "bundle_batch_vs_pgbench": round(batch_eps / pgbench_tps, 2),
            },
        },
    )
    print(f"wrote {path}")


def _ok(results: list[dict[str, Any]], mails: int) -> str:
    good = all(r["tickets"] == r["distinct_mails"] == mails for r in results)
    return "yes" if good else "NO: " + ", ".join(f"{r['tickets']} tickets/{r['distinct_mails']}" for r in results)


if __name__ == "__main__":
    main()
