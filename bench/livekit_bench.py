"""LiveKit room_finished: LLM calls per unique room under a duplicate storm, and the latency the claim adds.

One run, one process, real Postgres (a bench database of its own) and the fake OpenAI-compatible LLM
over HTTP (``devstack.fake_openai``), which counts calls per room.

- Storm: ROOMS rooms, each room_finished delivered COPIES times, shuffled, handled by THREADS workers
  at once with a 20 ms model. The claim path (``processors.livekit_room.analyse_room``) against the
  seed's code before its fix (read the status, mark 'processing' unconditionally, call, store).
- Latency: LATENCY_ROOMS unique rooms, one at a time, interleaved: the claim path (claim in one
  UPDATE .. RETURNING, call, fenced completion + event log) against the same flow without a claim
  (SELECT the row, call, UPDATE + event log) and against the seed's pre-fix flow. Medians and p95.

Run: ``.venv/bin/python -m bench.livekit_bench`` (writes bench/results/livekit.json).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from bench.common import median, percentile, table, write_result
from devstack.fakes import Behaviour, FakeProviders
from devstack.lambda_runtime import add_code_paths

add_code_paths()

from exactly_once.core import store  # noqa: E402 - the layer is on sys.path only now
from exactly_once.core.events import InboundEvent  # noqa: E402
from exactly_once.flows.livekit.feedback import FeedbackSettings  # noqa: E402
from exactly_once.flows.livekit.llm_client import LlmClient  # noqa: E402
from exactly_once.flows.livekit.processor import _messages, analyse_room  # noqa: E402
from exactly_once.ops.migrate import migrate  # noqa: E402

ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOMS, COPIES, THREADS = 40, 10, 8
LATENCY_ROOMS = 150
SETTINGS = FeedbackSettings(lease_seconds=120, max_attempts=3, redrive_seconds=120)

Flow = Callable[[psycopg.Connection[Any], InboundEvent, LlmClient], str]


def event(sid: str, event_id: str) -> InboundEvent:
    body = {"event": "room_finished", "id": event_id, "room": {"sid": sid, "name": f"name-{sid}"}}
    return InboundEvent("livekit", f"livekit:{event_id}", f"livekit:room:{sid}", "room_finished", body)


def claim_path(conn: psycopg.Connection[Any], ev: InboundEvent, llm: LlmClient) -> str:
    return analyse_room(conn, ev, llm, SETTINGS)


def _row(conn: psycopg.Connection[Any], sid: str) -> Any:
    return conn.execute(
        "SELECT id, status::text, room_sid, room_name, transcript FROM user_feedback WHERE room_sid = %(sid)s",
        {"sid": sid},
    ).fetchone()


def _call(llm: LlmClient, row: Any) -> dict[str, Any]:
    from exactly_once.flows.livekit.feedback import AnalysisClaim

    claim = AnalysisClaim(str(row[0]), "none", 1, row[2], row[3], row[4])
    answer = llm.chat(_messages(claim), idempotency_key=f"feedback-{row[0]}")
    return {"result": answer.as_json(), "model": answer.model}


def _store(conn: psycopg.Connection[Any], ev: InboundEvent, row: Any, analysis: dict[str, Any]) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE user_feedback SET status = 'completed', analysis = %(a)s::jsonb, completed_at = now()"
            " WHERE id = %(id)s",
            {"a": json.dumps(analysis), "id": row[0]},
        )
        store.record_event(conn, ev, "completed", str(row[0]), keep_payload=True)


def no_claim(conn: psycopg.Connection[Any], ev: InboundEvent, llm: LlmClient) -> str:
    """The same flow without the claim or the fence: find the row, call, store."""
    row = _row(conn, ev.payload["room"]["sid"])
    _store(conn, ev, row, _call(llm, row))
    return "completed"


def seed_before_fix(conn: psycopg.Connection[Any], ev: InboundEvent, llm: LlmClient) -> str:
    """Seed 001 before its fix: check the status, then mark 'processing' without a condition."""
    row = _row(conn, ev.payload["room"]["sid"])
    if row is None or row[1] != "initiated":
        return "skipped"
    conn.execute("UPDATE user_feedback SET status = 'processing' WHERE id = %(id)s", {"id": row[0]})
    _store(conn, ev, row, _call(llm, row))
    return "completed"


def seed_rooms(conn: psycopg.Connection[Any], prefix: str, n: int) -> list[str]:
    sids = [f"RM_{prefix}_{i}" for i in range(n)]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO user_feedback (room_sid, room_name, transcript) VALUES (%s, %s, %s)",
            [(sid, f"name-{sid}", "user: the call was fine") for sid in sids],
        )
    return sids


def storm(url: str, fakes: FakeProviders, llm: LlmClient, flow: Flow, prefix: str) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        sids = seed_rooms(conn, prefix, ROOMS)
    # The copies of one room arrive together (the incident: three at once), rooms one after another.
    events = [event(sid, f"EV_{sid}") for sid in sids for _ in range(COPIES)]
    local = threading.local()
    conns: list[psycopg.Connection[Any]] = []

    def handle(ev: InboundEvent) -> str:
        if not hasattr(local, "conn"):
            local.conn = psycopg.connect(url, autocommit=True)
            conns.append(local.conn)
        return flow(local.conn, ev, llm)

    before = fakes.count("llm.chat")
    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(handle, events))
    elapsed = time.perf_counter() - started
    for c in conns:
        c.close()
    calls = fakes.count("llm.chat") - before
    worst = max(fakes.count("llm.chat", sid) for sid in sids)
    return {"deliveries": len(events), "rooms": ROOMS, "llm_calls": calls, "calls_per_room": calls / ROOMS,
            "max_calls_one_room": worst, "seconds": round(elapsed, 2)}  # fmt: skip


def latency(url: str, llm: LlmClient) -> dict[str, dict[str, float]]:
    flows: dict[str, Flow] = {"claim path": claim_path, "no claim": no_claim, "seed before fix": seed_before_fix}
    samples: dict[str, list[float]] = {name: [] for name in flows}
    with psycopg.connect(url, autocommit=True) as conn:
        rooms = {name: seed_rooms(conn, f"lat{i}", LATENCY_ROOMS) for i, name in enumerate(flows)}
        for name, flow in flows.items():  # warm-up: connections, plans, the HTTP pool
            flow(conn, event(rooms[name].pop(), f"EV_warm_{name}"), llm)
        for i in range(LATENCY_ROOMS - 1):
            for name, flow in flows.items():  # interleaved: drift hits every flow alike
                ev = event(rooms[name][i], f"EV_lat_{name}_{i}")
                started = time.perf_counter()
                flow(conn, ev, llm)
                samples[name].append((time.perf_counter() - started) * 1000)
    return {
        name: {"p50_ms": round(median(v), 3), "p95_ms": round(percentile(v, 95), 3), "n": len(v)}
        for name, v in samples.items()
    }


def main() -> None:
    name = f"eo_bench_livekit_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    fakes = FakeProviders()
    # The fake answers headers and body in two writes; with Nagle on, the client's delayed ACK adds
    # ~40 ms to every call, noise that would drown the milliseconds measured here.
    fakes._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
    fakes.start()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
        llm = LlmClient(f"{fakes.url}/openai/v1", fakes.credentials["LLM_API_KEY"], "bench-model")
        fakes.behaviours["llm.chat"] = Behaviour(delay=0.02)
        storms = {
            "claim path": storm(url, fakes, llm, claim_path, "claim"),
            "seed before fix": storm(url, fakes, llm, seed_before_fix, "seed"),
        }
        fakes.behaviours.clear()
        lat = latency(url, llm)
    finally:
        fakes.stop()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    base = lat["no claim"]["p50_ms"]
    result = {
        "storm": {"rooms": ROOMS, "copies_per_room": COPIES, "threads": THREADS, "llm_delay_ms": 20, **storms},
        "latency": lat,
        "claim_added_p50_ms": round(lat["claim path"]["p50_ms"] - base, 3),
        "claim_p50_ratio_vs_no_claim": round(lat["claim path"]["p50_ms"] / base, 3),
        "claim_p50_ratio_vs_seed_before_fix": round(lat["claim path"]["p50_ms"] / lat["seed before fix"]["p50_ms"], 3),
    }
    print(f"Storm: {ROOMS} rooms x {COPIES} identical room_finished, {THREADS} workers at once, 20 ms model")
    rows = [
        (k, v["deliveries"], v["llm_calls"], f"{v['calls_per_room']:.2f}", v["max_calls_one_room"])
        for k, v in storms.items()
    ]
    print(table(rows, ("flow", "deliveries", "LLM calls", "calls/room", "max one room")))
    print(f"\nLatency per room_finished, {LATENCY_ROOMS - 1} unique rooms each, fake LLM without delay")
    rows = [(k, v["p50_ms"], v["p95_ms"], f"{v['p50_ms'] / base:.2f}") for k, v in lat.items()]
    print(table(rows, ("flow", "p50 ms", "p95 ms", "p50 / no claim")))
    print(f"\nclaim path adds {result['claim_added_p50_ms']} ms at p50 over the same flow without a claim")
    print(f"wrote {write_result('livekit', result)}")


if __name__ == "__main__":
    main()
