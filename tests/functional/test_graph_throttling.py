"""A throttled Graph fetch goes back to the queue for its Retry-After, and a short invocation starts no fetch.

The worker is invoked the way Lambda's SQS event source does (receive, invoke, delete what succeeded,
leave the failed ones alone), on moto's FIFO queue, against the fake Graph's throttling.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from devstack.fakes import Behaviour
from devstack.lambda_runtime import LambdaContext, sqs_event
from exactly_once.core.telemetry import Metric
from tests import emf
from tests.graph_support import add_mail, body, item, post

A = "a-user"
B = "b-user"
WAIT = 6  # over the in-process cap (5 s): Graph's wait is not slept, the event is deferred


def _receive(stack: Any) -> list[dict[str, Any]]:
    answer = stack.sqs().receive_message(
        QueueUrl=stack.aws.physical["EventsQueue"], MaxNumberOfMessages=10, AttributeNames=["All"]
    )
    return list(answer.get("Messages", []))


def _invoke(stack: Any, messages: list[dict[str, Any]], remaining_s: float = 60.0) -> set[str]:
    """One invocation as Lambda's event source makes it; the ids reported failed (the rest deleted)."""
    context = LambdaContext("EventWorkerFunction", timeout_s=remaining_s)
    try:
        result = stack.handler("EventWorkerFunction")(sqs_event(messages, stack.aws.arns["EventsQueue"]), context)
    except BatchProcessingError:  # every record failed: the invocation fails, Lambda deletes none
        return {m["MessageId"] for m in messages}
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    done = [m for m in messages if m["MessageId"] not in failed]
    if done:
        stack.sqs().delete_message_batch(
            QueueUrl=stack.aws.physical["EventsQueue"],
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
        )
    return failed


def _tickets(db: Any) -> int:
    return int(db.execute("SELECT count(*) FROM tickets").fetchone()[0])


def test_a_throttled_fetch_defers_its_mailbox_for_retry_after_then_settles_on_the_next_receive(stack, db, capsys):
    for i in range(3):
        add_mail(stack, f"a{i}", f"<a{i}@example.com>", user=A, conversation_id=f"conv-a{i}")
    assert post(stack, body(*(item(f"a{i}", user=A) for i in range(3)), item("b0", "deleted", user=B))).status == 202
    stack.fakes.state["setup:graph_subscriptions"]({"retry_after": WAIT})
    stack.fakes.behaviours["graph.throttle"] = Behaviour(fail_times=100, fail_status=429)
    emf.emitted(capsys)
    # WHEN the worker gets the batch while Graph throttles the mailbox
    messages = _receive(stack)
    assert len(messages) == 4
    started = time.monotonic()
    failed = _invoke(stack, messages)
    # THEN the mailbox's three events are reported failed after ONE Graph call (its group stops there)
    # and the deletion of the other mailbox settles without Graph
    assert len(failed) == 3
    assert stack.fakes.count("graph.get_message") == 1
    assert time.monotonic() - started < WAIT - 1  # Retry-After was not slept in process
    assert emf.emitted(capsys).get(("graph", Metric.GRAPH_THROTTLED)) == 1
    # AND they come back after Retry-After, not at once and not after the queue's 360 s
    assert _receive(stack) == []
    time.sleep(WAIT - (time.monotonic() - started) + 0.5)
    stack.fakes.behaviours.pop("graph.throttle")
    # WHEN the next invocations run (one receive each: a FIFO group is handed out again once the message
    # before it is deleted), each mail becomes one ticket, on its second receive
    counts = []
    while again := _receive(stack):
        counts += [m["Attributes"]["ApproximateReceiveCount"] for m in again]
        assert _invoke(stack, again) == set()
    assert counts == ["2", "2", "2"]  # one receive spent by the throttle, not five
    assert _tickets(db) == 3
    assert stack.fakes.count("graph.get_message") == 4


def test_an_invocation_near_its_timeout_starts_no_fetch_and_fails_only_those_items(stack, db):
    add_mail(stack, "a0", "<a0@example.com>", user=A, conversation_id="conv-a0")
    add_mail(stack, "b0", "<b0@example.com>", user=B, conversation_id="conv-b0")
    payload = body(item("a0", user=A), item("b0", user=B), item("c0", "deleted", user="c-user"))
    assert post(stack, payload).status == 202
    messages = _receive(stack)
    # WHEN the invocation has 5 s left, less than one fetch may take (connect + read timeout)
    failed = _invoke(stack, messages, remaining_s=5.0)
    # THEN no fetch started; the two mail events are failed items, the deletion settled
    assert stack.fakes.count("graph.get_message") == 0
    assert len(failed) == 2
    # AND they are visible again at once, for an invocation with time to spare
    again = _receive(stack)
    assert sorted(m["MessageId"] for m in again) == sorted(failed)
    assert _invoke(stack, again) == set()
    assert _tickets(db) == 2


def test_a_batch_of_only_throttled_events_fails_whole_and_still_waits_out_retry_after(stack, db):
    add_mail(stack, "a0", "<a0@example.com>", user=A)
    assert post(stack, body(item("a0", user=A))).status == 202
    stack.fakes.state["setup:graph_subscriptions"]({"retry_after": WAIT})
    stack.fakes.behaviours["graph.throttle"] = Behaviour(fail_times=1, fail_status=429)
    started = time.monotonic()
    # WHEN the invocation's only record is throttled (the batch utility then fails the invocation)
    messages = _receive(stack)
    assert _invoke(stack, messages) == {messages[0]["MessageId"]}
    # THEN the message still waits out Retry-After before its next receive
    assert _receive(stack) == []
    time.sleep(WAIT - (time.monotonic() - started) + 0.5)
    again = _receive(stack)
    assert [m["MessageId"] for m in again] == [messages[0]["MessageId"]]
    assert _invoke(stack, again) == set()
    assert _tickets(db) == 1
