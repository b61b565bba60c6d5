"""WhatsApp: replies per unique inbound message under a duplicate storm, and ack latency, in one run.

Storm: U unique text messages, each delivered by Meta several times at once (single-message
POSTs and whole-batch POSTs, from 4 processes), then every message event handed to 4 worker
processes at the same moment (as if ingest records and FIFO dedup were both gone), then the
whole batch re-delivered 8 days later (past the ingest window). Replies are counted at the fake
WhatsApp send API. The baseline is the seed's check-then-insert handler, racing the same way.

Latency: the ingest handler's answer time (signature -> split -> DynamoDB dedup per update ->
SQS) for a 100-message POST against a 1-message POST, each with fresh wamids, for the function
(the updates of one POST deduped concurrently) and for the shared pipeline's sequential deduper
(the baseline), interleaved. Local moto stands in for DynamoDB and SQS and handles one request at
a time; every request also gets a simulated AWS round trip. Ratios are the result; absolute
times are local.

    .venv/bin/python -m bench.whatsapp_bench
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections import Counter
from typing import Any

import psycopg
import time_machine

from bench.common import median, percentile, table, write_result
from devstack.aws_local import LocalAws, boto_client
from devstack.fakes import FakeProviders
from devstack.lambda_runtime import LambdaContext, add_code_paths, apigw_event, load_handler
from devstack.moto_server import SerializedMotoServer
from devstack.poller import QueuePoller
from tests.harness import stack_env
from tests.procs import deliver, run_parallel, work
from tests.whatsapp_support import CUSTOMER, FUNCTION, URL, change, entry, envelope, headers_for, meta_bytes
from tests.whatsapp_support import text_message as text

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
UNIQUE = 30
CUSTOMERS = [CUSTOMER, "447700900123", "5511987654321"]
SINGLE_RUNS, BATCH_RUNS, BATCH_SIZE = 20, 4, 100
SIMULATED_RTT_MS = 5  # an in-region DynamoDB or SQS round trip, which local moto lacks
# The seed's bot before its fix: check, then act. Bench-only SQL on a table of its own.
_NAIVE_TABLE = "CREATE TABLE IF NOT EXISTS naive_whatsapp (wamid text NOT NULL)"
_NAIVE_SEEN = "SELECT 1 FROM naive_whatsapp WHERE wamid = %(wamid)s"
_NAIVE_SAVE = "INSERT INTO naive_whatsapp (wamid) VALUES (%(wamid)s)"


def _messages(prefix: str) -> list[dict[str, Any]]:
    return [text(f"wamid.{prefix}{i}", f"m{i}", sender=CUSTOMERS[i % 3]) for i in range(UNIQUE)]


def _body(messages: list[dict[str, Any]]) -> bytes:
    return meta_bytes(envelope(entry(change(messages=messages))))


def _queue_bodies(raw: bytes) -> list[str]:
    from exactly_once.flows.whatsapp.adapter import WhatsAppAdapter
    from exactly_once.ingest.apigw import Request

    adapter = WhatsAppAdapter(os.environ["WHATSAPP_APP_SECRET"], os.environ["WHATSAPP_VERIFY_TOKEN"])
    return [e.to_message() for e in adapter.split(Request("POST", "/", raw, headers_for(raw), {})).events]


def naive_work(env: dict[str, str], bodies: list[str], start_at: float) -> int:
    """The seed's handler (no ingest dedup, no unique constraint): SELECT, then save, then reply."""
    os.environ.update(env)
    add_code_paths()
    from exactly_once.core.events import InboundEvent
    from exactly_once.sends.whatsapp_api import WhatsAppClient

    client = WhatsAppClient.from_env()
    sent = 0
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        time.sleep(max(0.0, start_at - time.time()))
        for body in bodies:
            message = InboundEvent.from_message(body).payload["message"]
            if conn.execute(_NAIVE_SEEN, {"wamid": message["id"]}).fetchone():
                continue
            conn.execute(_NAIVE_SAVE, {"wamid": message["id"]})
            client.send("106540352242922", message["from"], {"text": f"{message['text']['body']} is working"})
            sent += 1
    return sent


def _drain(env: dict[str, str], function: str, queue: str, aws: LocalAws) -> int:
    poller = QueuePoller(
        sqs=boto_client("sqs", aws.endpoint),
        queue_url=aws.physical[queue],
        queue_arn=aws.arns[queue],
        handler=load_handler(function),
        function_name=function,
    )
    total = 0
    for _ in range(50):
        n = poller.drain()
        total += n
        if n == 0:
            return total
    return total


def _sends_per_message(fakes: FakeProviders) -> Counter[str]:
    return Counter(c["key"] for c in fakes.effects() for _ in range(c["count"]) if c["kind"] == "whatsapp.send")


def storm(env: dict[str, str], aws: LocalAws, fakes: FakeProviders) -> dict[str, Any]:
    messages = _messages("S")
    batch = _body(messages)
    singles = [_body([m]) for m in messages]
    deliveries = [("POST", URL, raw, headers_for(raw)) for raw in singles * 3 + [batch] * 4]
    random.Random(7).shuffle(deliveries)
    start = time.time() + 3
    statuses = run_parallel(deliver, [(env, FUNCTION, deliveries[i::4], start) for i in range(4)])
    acks = Counter(s for per in statuses for s in per)
    bodies = _queue_bodies(batch)
    start = time.time() + 3
    run_parallel(work, [(env, bodies, start) for _ in range(4)])
    _drain(env, "EventWorkerFunction", "EventsQueue", aws)
    with time_machine.travel(time.time() + 8 * 24 * 3600 + 3600):
        late = load_handler(FUNCTION)(apigw_event("POST", URL, batch, headers_for(batch)), LambdaContext())
        _drain(env, "EventWorkerFunction", "EventsQueue", aws)
    _drain(env, "SendWorkerFunction", "SendQueue", aws)
    per = _sends_per_message(fakes)
    return {
        "unique_messages": UNIQUE,
        "webhook_posts": len(deliveries) + 1,
        "copies_per_message_at_ingest": 3 + 4 + 1,
        "racing_worker_copies_per_message": 4,
        "acks": {str(k): v for k, v in acks.items()} | {"late": late["statusCode"]},
        "replies": sum(per.values()),
        "replies_per_unique": sum(per.values()) / UNIQUE,
        "max_replies_one_message": max(per.values()) if per else 0,
    }


def naive_storm(env: dict[str, str], fakes: FakeProviders) -> dict[str, Any]:
    fakes.reset()
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(_NAIVE_TABLE)
    bodies = _queue_bodies(_body(_messages("N")))
    start = time.time() + 3
    run_parallel(naive_work, [(env, bodies, start) for _ in range(4)])
    per = _sends_per_message(fakes)
    return {
        "unique_messages": UNIQUE,
        "racing_worker_copies_per_message": 4,
        "replies": sum(per.values()),
        "replies_per_unique": sum(per.values()) / UNIQUE,
        "max_replies_one_message": max(per.values()) if per else 0,
    }


def _sequential_twin(handler_module: Any) -> Any:
    """The same ingest with the shared pipeline's default deduper (one write after another): the baseline."""
    from exactly_once.core import aws
    from exactly_once.ingest.dedup import IngestDeduper
    from exactly_once.ingest.pipeline import WebhookIngest

    ingest = handler_module.INGEST
    deduper = IngestDeduper(
        os.environ["IDEMPOTENCY_TABLE"],
        key_prefix="whatsapp-ingest",
        window_seconds=ingest.adapter.dedup_window_seconds,
        client=aws.dynamodb(),
    )
    return WebhookIngest(ingest.adapter, deduper, ingest.queue, ingest.max_body_bytes).handle


def latency(aws: LocalAws) -> dict[str, Any]:
    import sys

    concurrent = load_handler(FUNCTION)
    sequential = _sequential_twin(sys.modules[concurrent.__module__])
    sqs = boto_client("sqs", aws.endpoint)
    queue = aws.physical["EventsQueue"]

    def timed(handle: Any, size: int) -> float:
        raw = _body([text(f"wamid.L{uuid.uuid4().hex}", "hi") for _ in range(size)])
        event = apigw_event("POST", URL, raw, headers_for(raw))
        began = time.perf_counter()
        answer = handle(event, LambdaContext(function_name=FUNCTION, timeout_s=20))
        took = (time.perf_counter() - began) * 1000
        assert answer["statusCode"] == 200 and f'"accepted":{size}' in answer["body"], answer
        # keep the queue short: moto's SQS slows down as it fills
        while msgs := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
            sqs.delete_message_batch(
                QueueUrl=queue,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)],
            )
        return took

    def summary(single: list[float], batch: list[float]) -> dict[str, Any]:
        return {
            "single": {"runs": len(single), "p50_ms": median(single), "p99_ms": percentile(single, 99)},
            "batch": {"runs": len(batch), "size": BATCH_SIZE, "p50_ms": median(batch), "p99_ms": percentile(batch, 99)},
            "batch_over_single_p50": median(batch) / median(single),
        }

    # Each round trip to AWS costs a few milliseconds that local moto does not: add them to every
    # request of the ingest's own clients, so overlapping the writes is measured, not assumed.
    from exactly_once.core import aws as eo_aws

    for client in (eo_aws.dynamodb(), eo_aws.sqs()):
        client.meta.events.register("before-send", lambda **_: time.sleep(SIMULATED_RTT_MS / 1000))
    handles = {"concurrent_dedup": concurrent, "sequential_dedup": sequential}
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in handles}
    for handle in handles.values():
        timed(handle, 1)  # warm: imports, clients, connections
    # Interleaved, so a change in the machine's load hits both alike.
    for _ in range(SINGLE_RUNS):
        for name, handle in handles.items():
            samples[name][0].append(timed(handle, 1))
    for _ in range(BATCH_RUNS):
        for name, handle in handles.items():
            samples[name][1].append(timed(handle, BATCH_SIZE))
    result: dict[str, Any] = {name: summary(*samples[name]) for name in handles}
    result["simulated_rtt_ms"] = SIMULATED_RTT_MS
    result["batch_p50_sequential_over_concurrent"] = (
        result["sequential_dedup"]["batch"]["p50_ms"] / result["concurrent_dedup"]["batch"]["p50_ms"]
    )
    return result


def main() -> None:
    db_name = f"eo_whatsapp_bench_{os.getpid()}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{db_name}"')
    url = ADMIN.rsplit("/", 1)[0] + f"/{db_name}"
    moto = SerializedMotoServer().start()
    fakes = FakeProviders().start()
    try:
        add_code_paths()
        from exactly_once.ops.migrate import migrate

        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
        aws = LocalAws(moto.url).provision()
        env = {**stack_env(aws, fakes, url), "POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true"}
        os.environ.update(env)
        began = time.perf_counter()
        exact = storm(env, aws, fakes)
        naive = naive_storm(env, fakes)
        ack = latency(aws)
        elapsed = time.perf_counter() - began
    finally:
        fakes.stop()
        moto.stop()
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    write_result("whatsapp", {"storm": exact, "naive_baseline": naive, "ack_latency": ack, "seconds": elapsed})
    print(
        table(
            [
                (
                    "exactly-once",
                    exact["replies"],
                    f"{exact['replies_per_unique']:.2f}",
                    exact["max_replies_one_message"],
                ),
                (
                    "seed's check-then-insert",
                    naive["replies"],
                    f"{naive['replies_per_unique']:.2f}",
                    naive["max_replies_one_message"],
                ),
            ],
            (f"{UNIQUE} unique messages", "replies sent", "replies / unique", "max for one message"),
        )
    )
    print()
    rows = []
    for label, key in (
        ("concurrent dedup (function)", "concurrent_dedup"),
        ("sequential (baseline)", "sequential_dedup"),
    ):
        r = ack[key]
        rows.append((label, "1", f"{r['single']['p50_ms']:.0f}", f"{r['single']['p99_ms']:.0f}", "1.00"))
        rows.append(
            (
                label,
                str(BATCH_SIZE),
                f"{r['batch']['p50_ms']:.0f}",
                f"{r['batch']['p99_ms']:.0f}",
                f"{r['batch_over_single_p50']:.2f}",
            )
        )
    print(table(rows, ("ack latency", "messages per POST", "p50 ms", "p99 ms", "p50 / 1-message p50")))
    print(
        f"100-message POST, sequential p50 / concurrent p50: {ack['batch_p50_sequential_over_concurrent']:.2f}"
        f" (every AWS request of the ingest + {SIMULATED_RTT_MS} ms simulated round trip)"
    )
    print(f"written: bench/results/whatsapp.json ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
