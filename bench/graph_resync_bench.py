"""Graph delta resync: mails/s into tickets for a 10,000-mail mailbox and Graph calls per mail,
against fetching each mail by id, in the same process.

Real Postgres (a bench database of its own), the fake Graph over HTTP (``devstack.fake_graph``), the
library's own code: ``Resync`` pages the mailbox by delta query and queues one event per mail; the
worker's batch path (``processor.process_batch``, SQS batches of 10) turns them into tickets. The
queue is a list in memory (moto's SQS slows down as a queue fills, and is not what is measured).

- resync: ``Resync.resync`` over MAILS mails (pages of PAGE_SIZE) while live traffic goes on: after
  each page is queued, live notifications for LIVE_SHARE of its mails arrive first (fetched by id, as
  Graph's notifications are), then the page's resync events, which are duplicates for those mails.
- fetch by id (the baseline): the same number of mails in another mailbox, each a notification the
  worker fetches by id (``GET /users/{id}/messages/{id}``), batches of 10.

Both end with one ticket per mail (checked). Calls counted by the fake (token calls included).
Run: ``.venv/bin/python -m bench.graph_resync_bench`` (writes bench/results/graph_resync.json).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg

from bench.common import table, write_result
from devstack.fake_graph import graph_message
from devstack.fakes import FakeProviders
from devstack.lambda_runtime import add_code_paths

add_code_paths()

from exactly_once.core import db  # noqa: E402 - the layer is on sys.path only now
from exactly_once.core.events import InboundEvent  # noqa: E402
from exactly_once.core.fifo import EventQueue, group_id  # noqa: E402
from exactly_once.flows.graph import mailboxes, processor  # noqa: E402
from exactly_once.flows.graph.client import GraphClient  # noqa: E402
from exactly_once.flows.graph.resync import Resync  # noqa: E402
from exactly_once.ops.migrate import migrate  # noqa: E402

ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MAILS = int(os.environ.get("BENCH_GRAPH_MAILS", "10000"))
PAGE_SIZE = 50  # the resync's default (GRAPH_RESYNC_PAGE_SIZE)
LIVE_SHARE = 0.3  # of the resynced mails also notified live while the resync runs
BATCH = 10  # SQS batch size of the event worker
RESYNC_BOX, FETCH_BOX = "resync@contoso.test", "fetch@contoso.test"
SECRETS = {"GRAPH_CLIENT_ID": "test-client-id", "GRAPH_CLIENT_SECRET": "test-client-secret"}


class ListQueue(EventQueue):
    """The events queue as a list: what the resync queues, in order."""

    def __init__(self) -> None:
        self.events: list[InboundEvent] = []

    def send(self, events: Sequence[InboundEvent]) -> list[InboundEvent]:
        self.events.extend(events)
        return []


def notification(mailbox: str, subscription_id: str, message_id: str) -> InboundEvent:
    """A live notification as the Graph adapter splits it."""
    resource = f"Users/{mailbox}/Messages/{message_id}"
    item = {
        "subscriptionId": subscription_id,
        "changeType": "created",
        "resource": resource,
        "resourceData": {"id": message_id, "@odata.etag": 'W/"1"'},
    }
    key = f'graph:{subscription_id}|created|{message_id}|W/"1"'
    return InboundEvent("graph", key, group_id("graph:mailbox", mailbox), "created", item)


def settle(events: Sequence[InboundEvent]) -> None:
    """The event worker's batch path, SQS batches of 10; what it leaves goes one by one, as in the worker."""
    for start in range(0, len(events), BATCH):
        batch = [(str(uuid.uuid4()), e) for e in events[start : start + BATCH]]
        settled = processor.process_batch(batch)
        for message_id, event in batch:
            if message_id not in settled:
                processor.process(event)


def load_mailbox(fakes: FakeProviders, mailbox: str, prefix: str) -> list[str]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ids = [f"{prefix}-{n:05d}" for n in range(MAILS)]
    store = fakes.state["graph_messages"]
    for mid in ids:
        message = graph_message(mid, f"<{mid}@bench.example>", conversation_id=f"conv-{mid}")
        message["receivedDateTime"] = now
        store[(mailbox, mid)] = message
    return ids


def subscribe(conn: psycopg.Connection[Any], mailbox: str) -> str:
    """A watched mailbox with a live subscription the bundle made (notifications for it are fetched)."""
    mailboxes.watch(conn, mailbox, "inbox")
    sub = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO graph_subscriptions (subscription_id, mailbox, resource, client_state_id, expires_at, status)"
        " VALUES (%s, %s, %s, 'cs-bench', now() + interval '3 days', 'active')",
        (sub, mailbox, f"users/{mailbox}/mailFolders('inbox')/messages"),
    )
    return sub


def graph_calls(fakes: FakeProviders) -> dict[str, int]:
    kinds = ("graph.token", "graph.get_message", "graph.messages.delta")
    return {k: fakes.count(k) for k in kinds}


def run_resync(conn: psycopg.Connection[Any], fakes: FakeProviders, ids: list[str], sub: str) -> dict[str, Any]:
    rng = random.Random(15)
    live = set(rng.sample(ids, int(len(ids) * LIVE_SHARE)))
    queue = ListQueue()
    resync = Resync(GraphClient.from_env(), queue, lambda: dt.datetime.now(dt.UTC), page_size=PAGE_SIZE)
    fakes.calls.clear()
    started = time.perf_counter()
    settled = 0

    original = resync._page

    def page_then_work(link: str) -> dict[str, Any]:
        """After each page is queued (the next page is asked for), the worker settles what came meanwhile."""
        nonlocal settled
        pending = queue.events[settled:]
        settled = len(queue.events)
        notified = [e for e in pending if e.payload["message"]["id"] in live]
        settle([notification(RESYNC_BOX, sub, str(e.payload["message"]["id"])) for e in notified])
        settle(pending)
        return original(link)

    resync._page = page_then_work  # type: ignore[method-assign]
    outcome = resync.resync(conn, RESYNC_BOX)
    pending = queue.events[settled:]
    settle(
        [
            notification(RESYNC_BOX, sub, str(e.payload["message"]["id"]))
            for e in pending
            if e.payload["message"]["id"] in live
        ]
    )
    settle(pending)
    seconds = time.perf_counter() - started
    calls = graph_calls(fakes)
    return {
        "outcome": outcome,
        "seconds": round(seconds, 3),
        "mails_per_s": round(len(ids) / seconds, 1),
        "events_per_s": round((len(ids) + len(live)) / seconds, 1),  # resync events and live notifications
        "live_notifications": len(live),
        "graph_calls": calls,
        "resync_calls_per_mail": round((calls["graph.messages.delta"] + calls["graph.token"]) / len(ids), 4),
        "all_calls_per_mail": round(sum(calls.values()) / len(ids), 4),
    }


def run_fetch_by_id(fakes: FakeProviders, ids: list[str], sub: str) -> dict[str, Any]:
    processor.graph.cache_clear()  # its own client: its token call is counted here
    fakes.calls.clear()
    started = time.perf_counter()
    settle([notification(FETCH_BOX, sub, mid) for mid in ids])
    seconds = time.perf_counter() - started
    calls = graph_calls(fakes)
    return {
        "seconds": round(seconds, 3),
        "mails_per_s": round(len(ids) / seconds, 1),
        "graph_calls": calls,
        "all_calls_per_mail": round(sum(calls.values()) / len(ids), 4),
    }


def tickets(conn: psycopg.Connection[Any], prefix: str) -> tuple[int, int]:
    row = conn.execute(
        "SELECT count(*), count(DISTINCT external_message_id) FROM tickets WHERE external_message_id LIKE %s",
        (f"<{prefix}-%",),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def main() -> None:
    name = f"eo_bench_graph_resync_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    fakes = FakeProviders()
    fakes._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
    fakes.start()
    os.environ.update(
        {
            **SECRETS,
            "DATABASE_URL": url,
            "GRAPH_BASE_URL": f"{fakes.url}/graph/v1.0",
            "GRAPH_TOKEN_URL": f"{fakes.url}/graph/token",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_NAMESPACE": "ExactlyOnce",
        }
    )
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
        conn = db.connection()
        resync_ids = load_mailbox(fakes, RESYNC_BOX, "rs")
        fetch_ids = load_mailbox(fakes, FETCH_BOX, "fb")
        resync_sub, fetch_sub = subscribe(conn, RESYNC_BOX), subscribe(conn, FETCH_BOX)
        baseline = run_fetch_by_id(fakes, fetch_ids, fetch_sub)
        resynced = run_resync(conn, fakes, resync_ids, resync_sub)
        resynced["tickets"], resynced["distinct"] = tickets(conn, "rs")
        baseline["tickets"], baseline["distinct"] = tickets(conn, "fb")
    finally:
        db.reset()
        fakes.stop()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert resynced["tickets"] == resynced["distinct"] == MAILS, resynced
    assert baseline["tickets"] == baseline["distinct"] == MAILS, baseline
    result = {
        "mails": MAILS,
        "page_size": PAGE_SIZE,
        "live_share": LIVE_SHARE,
        "worker_batch": BATCH,
        "resync": resynced,
        "fetch_by_id": baseline,
        "throughput_ratio_resync_vs_fetch_by_id": round(resynced["mails_per_s"] / baseline["mails_per_s"], 2),
        "resync_calls_per_mail_ratio_vs_fetch_by_id": round(
            resynced["resync_calls_per_mail"] / baseline["all_calls_per_mail"], 4
        ),
    }
    print(f"{MAILS} mails into tickets; resync pages of {PAGE_SIZE}, {int(LIVE_SHARE * 100)}% also notified live")
    rows = [
        (
            "delta resync + live traffic",
            resynced["mails_per_s"],
            resynced["resync_calls_per_mail"],
            resynced["all_calls_per_mail"],
            resynced["tickets"],
        ),
        ("fetch each mail by id", baseline["mails_per_s"], "-", baseline["all_calls_per_mail"], baseline["tickets"]),
    ]
    print(table(rows, ("path", "mails/s", "resync calls/mail", "all calls/mail", "tickets")))
    print(f"throughput ratio {result['throughput_ratio_resync_vs_fetch_by_id']}x")
    print(f"wrote {write_result('graph_resync', result)}")


if __name__ == "__main__":
    main()
