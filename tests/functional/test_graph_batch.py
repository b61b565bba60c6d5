"""The Graph worker settles an SQS batch with one commit, with the effects of one-by-one processing."""

from __future__ import annotations

from devstack.fakes import Behaviour
from devstack.lambda_runtime import LambdaContext, apigw_event, fifo_message, sqs_event
from exactly_once.flows.graph.adapter import GraphAdapter
from exactly_once.ingest.apigw import Request
from tests.graph_support import HEADERS, URL, add_mail, body, item
from tests.harness import TEST_SECRETS

OTHER = "6a7b1c2d-0000-4000-8000-000000000002"
THIRD = "6a7b1c2d-0000-4000-8000-000000000003"


def queue_messages(*items: dict) -> list[dict]:
    """The queue messages ingest would send for these notification items, in this order."""
    adapter = GraphAdapter(TEST_SECRETS["GRAPH_CLIENT_STATE"])
    request = Request.from_apigw_v2(apigw_event("POST", URL, body(*items).encode(), HEADERS))
    events = adapter.split(request).events
    return [fifo_message(event.to_message(), event.group, n) for n, event in enumerate(events, start=1)]


def run_batch(stack, messages: list[dict]) -> dict:
    handler = stack.handler("EventWorkerFunction")
    event = sqs_event(messages, "arn:aws:sqs:us-east-1:000000000000:EventsQueue.fifo")
    return handler(event, LambdaContext(function_name="EventWorkerFunction", timeout_s=60))


def test_a_batch_commits_once_with_the_effects_of_one_by_one(stack, db):
    # GIVEN a batch: in another mailbox a mail whose first fetch fails and the next mail of that
    # mailbox; a new mail, its reply and its "updated" notification; a mail of a third mailbox
    add_mail(stack, "c1", "<c1@example.com>", user=OTHER, conversation_id="conv-c")
    add_mail(stack, "d1", "<d1@example.com>", user=OTHER, conversation_id="conv-d")
    add_mail(stack, "a1", "<a1@example.com>", conversation_id="conv-a")
    add_mail(stack, "b1", "<b1@example.com>", conversation_id="conv-a", in_reply_to="<a1@example.com>")
    add_mail(stack, "e1", "<e1@example.com>", user=THIRD, conversation_id="conv-e")
    # three 503s: the Graph client's attempts for the batch's first fetch (c1), then Graph recovers
    stack.fakes.behaviours["graph.get_message"] = Behaviour(fail_times=3, fail_status=503)
    messages = queue_messages(
        item("c1", user=OTHER),
        item("d1", user=OTHER),
        item("a1"),
        item("b1"),
        item("a1", change="updated", etag='W/"etag-2"'),
        item("e1", user=THIRD),
    )
    # WHEN the worker gets them as one batch
    result = run_batch(stack, messages)
    # THEN nothing failed: c1's failed fetch left c1 and d1 to the one-by-one path, which fetched c1 again
    assert result == {"batchItemFailures": []}
    tickets = dict(db.execute("SELECT external_message_id, xmin::text FROM tickets").fetchall())
    assert set(tickets) == {"<a1@example.com>", "<c1@example.com>", "<d1@example.com>", "<e1@example.com>"}
    # the reply became a comment on a1's ticket, created earlier in the same transaction
    (comment_xmin, parent) = db.execute(
        "SELECT c.xmin::text, t.external_message_id FROM ticket_comments c JOIN tickets t ON t.id = c.ticket_id"
    ).fetchone()
    assert parent == "<a1@example.com>"
    # a1, its reply and e1 committed together; c1 and d1 one by one, in their mailbox's order
    assert tickets["<a1@example.com>"] == tickets["<e1@example.com>"] == comment_xmin
    assert len({tickets["<c1@example.com>"], tickets["<d1@example.com>"], tickets["<a1@example.com>"]}) == 3
    ids = dict(db.execute("SELECT external_message_id, id FROM tickets").fetchall())
    assert ids["<c1@example.com>"] < ids["<d1@example.com>"]
    outcomes = sorted(r[0] for r in db.execute("SELECT outcome FROM event_log"))
    assert outcomes == ["comment", "duplicate", "ticket", "ticket", "ticket", "ticket"]
    # one fetch per mail; c1 fetched again by the one-by-one path after its three failed attempts
    assert stack.fakes.count("graph.get_message", "c1") == 4
    assert stack.fakes.count("graph.get_message", "d1") == 1
    assert stack.fakes.count("graph.get_message", "a1") == 2  # created and updated: two notifications


def test_a_redelivered_batch_is_acknowledged_without_fetching(stack, db):
    for n in range(3):
        add_mail(stack, f"r{n}", f"<r{n}@example.com>", conversation_id=f"conv-r{n}")
    messages = queue_messages(*(item(f"r{n}") for n in range(3)))
    assert run_batch(stack, messages) == {"batchItemFailures": []}
    calls = stack.fakes.count("graph.get_message")
    # WHEN the same batch comes back (a crash before the SQS delete)
    assert run_batch(stack, messages) == {"batchItemFailures": []}
    # THEN the event log stops it before any fetch; still one ticket per mail
    assert stack.fakes.count("graph.get_message") == calls
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 3
    assert [r[0] for r in db.execute("SELECT deliveries FROM event_log ORDER BY id")] == [2, 2, 2]
