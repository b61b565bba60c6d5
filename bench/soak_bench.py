"""Soak: a steady mixed rate through the local stack; memory, connections and errors must stay flat (issue 17).

The stack starts as ``make run`` starts it (a child ``python -m devstack.run``, schedules on, one poller per
SQS source), on a database of its own. For ``SOAK_SECONDS`` (600; shorter for a smoke run) the soak sends
``SOAK_RATE`` requests/s (20), open loop: every provider flow the storm knows (devstack/storm_flows.py: Graph,
LiveKit, WhatsApp, Unipile, Standard Webhooks, Stripe, GitHub, Slack and POST /sends), new events in small
batches, each delivered twice (the copy a few seconds later: a provider's retry, stopped as a duplicate).
Every ``SOAK_SAMPLE_S`` (10) it samples the stack process's RSS (and its children's: the moto server), its
threads and open files, the stack's Postgres connections (pg_stat_activity for its database) and the
answers so far. Then it waits for the queues to drain and counts each event's effects (exactly one; the
events of the last round, cut short by the end, are not counted).

Flat means: the last minute's mean over the first minute's (memory, connections), the slope over the run
after its first minute, no 5xx, no lost or duplicate effect. Writes bench/results/soak.json.

    SOAK_SECONDS=60 .venv/bin/python -m bench.soak_bench      # a smoke run
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

from bench.common import percentile, table, write_result
from devstack import launcher
from devstack.lambda_runtime import add_code_paths
from devstack.storm import Delivery, Flow, StormClient
from devstack.storm_flows import discover
from devstack.template import ROOT

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
APP_NAME = "eo-soak"  # the soak's own Postgres sessions, left out of the stack's connection count
_SQL = Path(__file__).with_name("sql") / "soak.sql"
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def _setting(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def _query(name: str) -> str:
    parts = _NAME.split(_SQL.read_text(encoding="utf-8"))
    return {n: body.strip().rstrip(";") for n, body in zip(parts[1::2], parts[2::2], strict=True)}[name]


@dataclass
class Answers:
    """Every answer so far, counted under one lock (the client threads and the sampler share it)."""

    by_status: dict[str, dict[int, int]] = field(default_factory=dict)  # flow -> status -> count
    refusals: dict[str, int] = field(default_factory=dict)  # "status error-code" -> count (not 2xx)
    latencies_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, flow: str, status: int, latency_s: float, body: bytes) -> None:
        with self.lock:
            counts = self.by_status.setdefault(flow, {})
            counts[status] = counts.get(status, 0) + 1
            self.latencies_ms.append(latency_s * 1000)
            if status >= 300:
                reason = f"{status} {_error_code(body)}"
                self.refusals[reason] = self.refusals.get(reason, 0) + 1

    def totals(self) -> dict[str, int]:
        with self.lock:
            statuses = [(s, n) for counts in self.by_status.values() for s, n in counts.items()]
        return {
            "requests": sum(n for _, n in statuses),
            "errors_5xx": sum(n for s, n in statuses if s >= 500),  # 599: no answer at all
            "throttled_429": sum(n for s, n in statuses if s == 429),
            "other_4xx": sum(n for s, n in statuses if 400 <= s < 500 and s != 429),
        }


@dataclass
class Batch:
    flow: Flow
    n: int


class Feed:
    """Deliveries a batch at a time: every flow's new events, interleaved, the copies after the originals."""

    def __init__(self, stack: launcher.RunningStack, events_per_flow: int) -> None:
        self.stack = stack
        self.n = events_per_flow
        self.routes = {r["route"] for r in launcher.get_json(stack.url + "/local/routes")}
        self.client = StormClient(stack.url)
        self.skipped: dict[str, str] = {}

    def next(self) -> tuple[list[Batch], list[tuple[str, Delivery]]]:
        batches: list[Batch] = []
        firsts: list[list[tuple[str, Delivery]]] = []
        copies: list[list[tuple[str, Delivery]]] = []
        # A new flow object per batch: a new run id, so every batch's events (and sender accounts) are new.
        for flow, reason in discover(self.stack.parameters(), self.routes, False, self.stack.env()):
            if reason:
                self.skipped[flow.name] = reason
                continue
            flow.prepare(self.client, self.n)
            deliveries = flow.deliveries(self.n, 2, naive=False)
            batches.append(Batch(flow, self.n))
            firsts.append([(flow.name, d) for d in deliveries if d.wave == "burst"])
            copies.append([(flow.name, d) for d in deliveries if d.wave == "later"])
        waves = (zip_longest(*firsts), zip_longest(*copies))
        return batches, [pair for wave in waves for pairs in wave for pair in pairs if pair is not None]


def _error_code(body: bytes) -> str:
    """The answer's ``error`` code (the ingest's 503 ``in_progress`` is a retry the provider makes anyway)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return "-"
    return str(answer.get("error") or answer.get("message") or "-") if isinstance(answer, dict) else "-"


def _send(client: StormClient, answers: Answers, flow: str, delivery: Delivery) -> None:
    started = time.perf_counter()
    try:
        status, body = client.request(delivery.method, delivery.path, delivery.body, delivery.signed_headers())
    except (http.client.HTTPException, OSError):
        status, body = 599, b""
    answers.add(flow, status, time.perf_counter() - started, body)


def _tree_rss(process: psutil.Process) -> tuple[int, int, int, int]:
    """(stack RSS, children's RSS, stack threads, stack open files) in bytes and counts."""
    children = 0
    for child in process.children(recursive=True):
        try:
            children += child.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return process.memory_info().rss, children, process.num_threads(), process.num_fds()


def _sample(
    started: float, process: psutil.Process, admin: psycopg.Connection[Any], db: str, answers: Answers, url: str
) -> dict[str, Any]:
    rss, children_rss, threads, fds = _tree_rss(process)
    total, active, idle = admin.execute(_query("stack_connections"), {"db": db}).fetchone() or (0, 0, 0)
    try:
        backlog, dead = _queues(url)
    except (OSError, ValueError, KeyError):
        backlog = dead = -1
    return {
        "t_s": round(time.monotonic() - started, 1),
        "stack_rss_mb": round(rss / 2**20, 1),
        "children_rss_mb": round(children_rss / 2**20, 1),
        "threads": threads,
        "open_files": fds,
        "pg_connections": int(total),
        "pg_active": int(active),
        "pg_idle": int(idle),
        "queue_backlog": backlog,
        "dead_letters": dead,
        **answers.totals(),
    }


def _queues(url: str) -> tuple[int, int]:
    """(messages waiting or in flight on the source queues, messages in the dead-letter queues)."""
    queues = launcher.get_json(url + "/local/state", timeout=10)["queues"].values()
    backlog = sum(q["visible"] + q["in_flight"] + q["delayed"] for q in queues if not q["dead_letter_queue"])
    return backlog, sum(q["visible"] for q in queues if q["dead_letter_queue"])


def _mean(samples: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(s[key] for s in samples) if samples else 0.0


def _slope_per_min(samples: list[dict[str, Any]], key: str) -> float:
    if len(samples) < 2:
        return 0.0
    xs = [s["t_s"] / 60 for s in samples]
    return statistics.linear_regression(xs, [float(s[key]) for s in samples]).slope


def summarise(samples: list[dict[str, Any]], window_s: float) -> dict[str, Any]:
    """First-minute and last-minute means, their ratio, and the slope after the first minute."""
    end = samples[-1]["t_s"] if samples else 0.0
    first = [s for s in samples if s["t_s"] <= window_s]
    last = [s for s in samples if s["t_s"] >= end - window_s]
    settled = [s for s in samples if s["t_s"] > window_s] or samples
    out: dict[str, Any] = {}
    for key in ("stack_rss_mb", "children_rss_mb", "pg_connections", "threads", "open_files", "queue_backlog"):
        a, b = _mean(first, key), _mean(last, key)
        out[key] = {
            "first_minute": round(a, 1),
            "last_minute": round(b, 1),
            "ratio": round(b / a, 3) if a else None,
            "max": max(s[key] for s in samples) if samples else 0,
            "slope_per_min_after_first_minute": round(_slope_per_min(settled, key), 3),
        }
    return out


#: Claims still to settle: a send the pacing or a retry deferred waits in Postgres, not in a queue.
UNSETTLED = {"send_queue": ("pending", "processing")}


def _settle(url: str, timeout: float) -> tuple[float, dict[str, int]]:
    """Seconds until the queues are empty and no claim waits (the workers caught up, at most ``timeout``),
    and what still waited then."""
    started = time.monotonic()
    while True:
        claims = launcher.get_json(url + "/local/state", timeout=10)["claims"]
        waiting = {
            f"{table}.{status}": claims[table][status]
            for table, states in UNSETTLED.items()
            for status in states
            if claims.get(table, {}).get(status)
        }
        backlog = _queues(url)[0]
        if backlog:
            waiting["queued messages"] = backlog
        if not waiting or time.monotonic() - started > timeout:
            # Where every send ended (a reply the provider never confirmed is "unknown", kept for review).
            waiting.update({f"send_queue.{k} (final)": v for k, v in claims.get("send_queue", {}).items()})
            return time.monotonic() - started, waiting
        time.sleep(2)


def effects(batches: list[Batch], database_url: str) -> dict[str, dict[str, int]]:
    """Per flow: events, lost (no effect) and extra effects (a duplicate that got through)."""
    out: dict[str, dict[str, int]] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for batch in batches:
            counts = batch.flow.effects(conn, batch.n, False)
            row = out.setdefault(batch.flow.name, {"events": 0, "lost": 0, "extra": 0})
            row["events"] += batch.n
            row["lost"] += sum(1 for c in counts if c == 0)
            row["extra"] += sum(c - 1 for c in counts if c > 1)
    return out


def soak(stack: launcher.RunningStack, db_name: str, seconds: float, rate: float, every: float) -> dict[str, Any]:
    assert stack.process is not None
    os.environ["PGAPPNAME"] = APP_NAME  # after the stack started: only the soak's own sessions carry it
    process = psutil.Process(stack.process.pid)
    feed = Feed(stack, events_per_flow=max(1, round(rate * every / 18)))  # 9 flows x 2 copies a batch
    answers = Answers()
    client = StormClient(stack.url)
    ready: queue.Queue[tuple[list[Batch], list[tuple[str, Delivery]]]] = queue.Queue(maxsize=2)
    sent_batches: list[Batch] = []  # whole rounds sent: a round cut short by the end is not counted
    stop = threading.Event()

    def produce() -> None:  # batches made ahead: preparing one (fake mail, LiveKit rows) is not paced
        while not stop.is_set():
            batch = feed.next()
            while not stop.is_set():
                try:
                    ready.put(batch, timeout=1)
                    break
                except queue.Full:
                    continue

    threading.Thread(target=produce, name="soak-feed", daemon=True).start()
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    sent = 0
    with (
        psycopg.connect(ADMIN, autocommit=True) as admin,
        ThreadPoolExecutor(max_workers=8, thread_name_prefix="soak", initializer=client.connect) as pool,
    ):
        samples.append(_sample(started, process, admin, db_name, answers, stack.url))
        next_sample = started + every
        try:
            while sent / rate < seconds:
                batches, deliveries = ready.get(timeout=120)  # a feed that died raises Empty here
                for flow, delivery in deliveries:
                    due = started + sent / rate
                    if due - started >= seconds:
                        break
                    if time.monotonic() >= next_sample:
                        samples.append(_sample(started, process, admin, db_name, answers, stack.url))
                        next_sample += every
                    time.sleep(max(0.0, due - time.monotonic()))
                    pool.submit(_send, client, answers, flow, delivery)
                    sent += 1
                else:
                    sent_batches += batches
        finally:  # Ctrl-C included: the feed stops making batches for a stack about to stop
            stop.set()
    elapsed = time.monotonic() - started
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        samples.append(_sample(started, process, admin, db_name, answers, stack.url))
    settle_s, unsettled = _settle(stack.url, timeout=180)
    return {
        "seconds": round(elapsed, 1),
        "rate_target_per_s": rate,
        "rate_sent_per_s": round(sent / elapsed, 2),
        "settle_after_s": round(settle_s, 1),
        "unsettled_then": unsettled,  # and the send queue's final statuses
        "answers": {
            **answers.totals(),
            "by_flow": {f: dict(sorted(c.items())) for f, c in answers.by_status.items()},
            "refusals": answers.refusals,
        },
        "ack_ms": {p: round(percentile(answers.latencies_ms, v), 1) for p, v in (("p50", 50), ("p99", 99))},
        "effects": effects(sent_batches, stack.parameters()["DATABASE_URL"]),
        "skipped": feed.skipped,
        "samples": samples,
        "flat": summarise(samples, min(60.0, seconds / 3)),
    }


def _log_errors(path: Path) -> int:
    """ERROR lines in the stack's log (its own logging and the functions' JSON logs)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return sum(1 for line in text.splitlines() if " ERROR " in line or '"level":"ERROR"' in line)


def main() -> None:
    seconds = _setting("SOAK_SECONDS", 600)
    rate = _setting("SOAK_RATE", 20)
    every = _setting("SOAK_SAMPLE_S", 10)
    add_code_paths()  # the flows derive dedup keys with the adapters' own code
    db_name = f"eo_soak_bench_{int(time.time())}"
    log_path = ROOT / ".local" / "soak-stack.log"  # kept: the 5xx and ERROR lines are explained there
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="eo-soak-") as tmp:
        extra = {"LOCAL_DB_NAME": db_name, "DATABASE_URL": ""}
        try:
            with (
                log_path.open("w") as log,
                launcher.child_stack(state_dir=Path(tmp), extra_env=extra, log=log) as stack,
            ):
                result = soak(stack, db_name, seconds, rate, every)
        finally:
            os.environ.pop("PGAPPNAME", None)
            with psycopg.connect(ADMIN, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name)))
        result["stack_log_error_lines"] = _log_errors(log_path)
    result["stack_log"] = str(log_path.relative_to(ROOT))
    write_result("soak", result)
    flat = result["flat"]
    rows = [
        (k, v["first_minute"], v["last_minute"], v["ratio"], v["max"], v["slope_per_min_after_first_minute"])
        for k, v in flat.items()
    ]
    print(table(rows, ("sample", "first minute", "last minute", "ratio", "max", "slope/min after 1st min")))
    answers = result["answers"]
    lost = sum(e["lost"] for e in result["effects"].values())
    extra_effects = sum(e["extra"] for e in result["effects"].values())
    print(
        f"{answers['requests']} requests in {result['seconds']} s ({result['rate_sent_per_s']}/s): "
        f"5xx {answers['errors_5xx']}, 429 {answers['throttled_429']}, other 4xx {answers['other_4xx']}; "
        f"ack p50 {result['ack_ms']['p50']} ms, p99 {result['ack_ms']['p99']} ms; lost {lost}, "
        f"duplicate effects {extra_effects}; stack log ERROR lines {result['stack_log_error_lines']}"
    )
    print(json.dumps({"written": "bench/results/soak.json"}))


if __name__ == "__main__":
    main()
