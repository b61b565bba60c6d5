"""Bad Graph input gets a clear JSON error and nothing is enqueued; mixed batches keep the valid items."""

from __future__ import annotations

import json

import pytest

from devstack.fakes import Behaviour
from tests.graph_support import add_mail, body, item, post


@pytest.mark.parametrize(
    ("payload", "status", "error"),
    [
        ("{not json", 400, "invalid_json"),
        ('{"items": []}', 400, "missing_value"),
        ('{"value": {}}', 400, "missing_value"),
        ("[1, 2]", 400, "missing_value"),
        (b"\xff\xfe{}", 400, "invalid_encoding"),
    ],
)
def test_malformed_body_is_400_with_a_json_error(stack, payload, status, error):
    answer = post(stack, payload)
    assert answer.status == status
    assert answer.json()["error"] == error
    assert stack.queue_depth("EventsQueue") == 0


def test_every_item_failing_client_state_is_401_and_nothing_enqueued(stack):
    answer = post(stack, body(item("m1", client_state="wrong"), item("m2", client_state="")))
    assert answer.status == 401
    assert answer.json()["error"] == "invalid_client_state"
    assert stack.queue_depth("EventsQueue") == 0


def test_mixed_batch_enqueues_only_the_authentic_items(stack, db):
    add_mail(stack, "good", "<good@example.com>")
    answer = post(stack, body(item("good"), item("forged", client_state="guess"), {"clientState": None}))
    assert answer.status == 202
    assert answer.json() == {"accepted": 1, "duplicates": 0, "rejected": 2}
    stack.drain()
    assert [r[0] for r in db.execute("SELECT external_message_id FROM tickets")] == ["<good@example.com>"]
    assert stack.fakes.count("graph.get_message", "forged") == 0


def test_body_over_the_limit_is_413(stack, monkeypatch):
    big = body(*[item(f"m{i}") for i in range(3000)])
    assert len(big) > 1_048_576
    answer = post(stack, big)
    assert answer.status == 413
    assert answer.json()["error"] == "payload_too_large"
    assert stack.queue_depth("EventsQueue") == 0


def test_authentic_item_without_resource_id_is_quarantined_not_lost(stack, db):
    broken = item("x")
    del broken["resourceData"]["id"]
    answer = post(stack, body(broken))
    assert answer.status == 202
    stack.drain()
    row = db.execute("SELECT provider, reason, raw FROM quarantine").fetchone()
    assert row[0] == "graph"
    assert "resourceData.id" in row[1]
    assert json.loads(row[2])["subscriptionId"] == broken["subscriptionId"]


def test_lifecycle_notifications_are_recorded_and_counted_once(stack, db, capsys):
    lifecycle = {
        "subscriptionId": "sub-1",
        "subscriptionExpirationDateTime": "2026-11-25T08:00:00Z",
        "tenantId": "t",
        "clientState": item("x")["clientState"],
        "lifecycleEvent": "reauthorizationRequired",
    }
    assert post(stack, body(lifecycle)).status == 202
    assert post(stack, body(lifecycle)).json()["duplicates"] == 1
    stack.drain()
    assert db.execute("SELECT kind, outcome FROM event_log").fetchall() == [
        ("lifecycle:reauthorizationRequired", "lifecycle_recorded")
    ]
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(m.get("LifecycleEvents") == [1.0] or m.get("LifecycleEvents") == 1.0 for m in emitted)


def test_graph_answering_500_retries_then_lands_once(stack, db):
    add_mail(stack, "m5", "<m5@example.com>")
    stack.fakes.behaviours["graph.get_message"] = Behaviour(fail_times=4, fail_status=503)
    post(stack, body(item("m5")))
    stack.drain()
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    assert stack.fakes.count("graph.get_message", "m5") >= 3
