"""Helpers for the send queue tests: POST /sends, the worker, the reapers, the fakes' counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devstack import fake_unipile
from tests.harness import TEST_SECRETS, HttpAnswer, Stack

EVENTS = Path(__file__).resolve().parent.parent / "events"
URL = "http://local/sends"
AUTH = {"authorization": f"Bearer {TEST_SECRETS['API_TOKEN']}", "content-type": "application/json"}


def send_body(
    text: str = "Hello there", *, chat: str = "chat_1", sender: str = "acc_1", **extra: Any
) -> dict[str, Any]:
    return {"channel": "unipile", "sender_account": sender, "recipient": chat, "payload": {"text": text}, **extra}


def post_send(stack: Stack, body: dict[str, Any] | str, key: str | None = None) -> HttpAnswer:
    headers = dict(AUTH)
    if key is not None:
        headers["idempotency-key"] = key
    raw = body if isinstance(body, str) else json.dumps(body)
    return stack.invoke_http("SendEnqueueFunction", "POST", URL, raw, headers)


def drain(stack: Stack) -> int:
    return stack.drain("SendWorkerFunction", "SendQueue")


def reap(only: list[str] | None = None) -> dict[str, int]:
    from exactly_once.core import db
    from exactly_once.ops.reapers import run_all

    return run_all(db.connection(), only=only)


def row(db: Any, send_id: int) -> dict[str, Any]:
    cur = db.execute("SELECT * FROM send_queue WHERE id = %s", (send_id,))
    names = [c.name for c in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def behave(stack: Stack, kind: str, **spec: Any) -> None:
    from devstack.fakes import Behaviour

    stack.fakes.behaviours[kind] = Behaviour(**spec)


def delivered(stack: Stack, chat: str, text: str | None = None) -> int:
    return fake_unipile.delivered(stack.fakes, chat, text)


def example_event() -> dict[str, Any]:
    return json.loads((EVENTS / "send_enqueue.json").read_text())


def relay_in_child(env: dict[str, str], ids: list[int]) -> int:
    """send_queue.relay() in a spawned process (for EO_CRASH_AT=send.relay.after_sqs)."""
    import os

    os.environ.update(env)
    from devstack.lambda_runtime import add_code_paths

    add_code_paths()
    from exactly_once.sends import queue as send_queue

    return send_queue.relay(ids)


def work_concurrently(
    env: dict[str, str], bodies: list[str], start_at: float, consumers: int, function: str = "SendWorkerFunction"
) -> int:
    """One overlapping worker in a spawned process, run as ``consumers`` concurrent invocations of the
    handler (threads taking the bodies in order, each an SQS batch of one), as Lambda runs concurrent
    invocations: each consumer has its own Postgres connection, like its own container. Returns the
    batch item failures."""
    import os
    import queue
    import threading
    import time

    os.environ.update(env)
    from devstack.lambda_runtime import LambdaContext, add_code_paths

    add_code_paths()
    from devstack.functions_host import per_thread_connections
    from devstack.lambda_runtime import fifo_message, load_handler, sqs_event
    from exactly_once.core import telemetry

    per_thread_connections()  # one connection per consumer, as one per Lambda container
    lock = threading.Lock()
    for name in ("incr", "flush"):  # one metrics buffer per process: serialise the consumers on it
        method = getattr(telemetry.Counters, name)

        def locked(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            with lock:
                return _method(*args, **kwargs)

        setattr(telemetry.Counters, name, locked)

    handler = load_handler(function)
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for body in bodies:
        todo.put(body)
    failures: list[int] = []

    def consume() -> None:
        while True:
            try:
                body = todo.get_nowait()
            except queue.Empty:
                return
            result = handler(
                sqs_event([fifo_message(body)], "arn:aws:sqs:us-east-1:000000000000:SendQueue.fifo"),
                LambdaContext(function_name=function, timeout_s=60),
            )
            failures.append(len(result.get("batchItemFailures", [])))

    time.sleep(max(0.0, start_at - time.time()))
    threads = [threading.Thread(target=consume) for _ in range(consumers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(failures) != len(bodies):
        raise RuntimeError(f"{len(bodies) - len(failures)} invocations raised")
    return sum(failures)
