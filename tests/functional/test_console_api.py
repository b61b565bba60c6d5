"""The console's JSON API on the test stack: the same rows as the CLI, each action once per key, bad input
answered with the right status and a JSON body, no secret in any answer.

The handler is called as API Gateway calls it (after the ApiToken authorizer, which the browser test
and the local-stack gateway exercise); Postgres, serialised moto and the fake Graph are real.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from devstack.fakes import Behaviour
from exactly_once.ops import cli
from tests.functional.test_operations_cli import KEY_M1, quarantine_mail_without_message_id
from tests.graph_support import add_mail, body, item, post
from tests.harness import TEST_SECRETS, HttpAnswer, Stack
from tests.send_support import post_send, send_body

FUNCTION = "ConsoleFunction"
BASE = "http://local/console/api/"


def get(stack: Stack, path: str) -> HttpAnswer:
    return stack.invoke_http(FUNCTION, "GET", BASE + path)


def act(stack: Stack, path: str, payload: dict[str, Any] | str, key: str | None = "key-0001") -> HttpAnswer:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["idempotency-key"] = key
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return stack.invoke_http(FUNCTION, "POST", BASE + path, raw, headers)


def a_second_quarantined_mail(stack: Stack) -> int:
    add_mail(stack, "m2", "")
    assert post(stack, body(item("m2"))).json()["accepted"] == 1
    stack.drain()
    from exactly_once.core import db

    row = db.connection().execute("SELECT id FROM quarantine WHERE event_key LIKE %s", ("%|m2|%",)).fetchone()
    assert row is not None
    return int(row[0])


def test_quarantine_list_show_and_resolve_leave_the_rows_the_cli_leaves(stack, db, capsys):
    # GIVEN two mails quarantined for the same reason
    first = quarantine_mail_without_message_id(stack, db)
    second = a_second_quarantined_mail(stack)
    listed = get(stack, "quarantine").json()
    assert [r["id"] for r in listed["items"]] == [second, first] and listed["next"] is None
    shown = get(stack, f"quarantine/{first}").json()
    assert shown["event_key"] == KEY_M1 and json.loads(shown["raw"])["resourceData"]["id"] == "m1"
    # WHEN the CLI resolves one and the console the other, with the same operator and note
    assert cli.main(["quarantine", "resolve", str(first), "--by", "ops@test", "--note", "fixed"]) == 0
    capsys.readouterr()
    answer = act(stack, f"quarantine/{second}/resolve", {"operator": "ops@test", "note": "fixed"})
    # THEN both rows read the same (status, who, note), apart from their ids and times
    assert answer.status == 200 and answer.json()["status"] == "resolved"
    rows = db.execute("SELECT id, status, handled_by, note, handled_at IS NOT NULL FROM quarantine ORDER BY id")
    assert [r[1:] for r in rows.fetchall()] == [("resolved", "ops@test", "fixed", True)] * 2


def test_a_double_click_is_one_action_and_a_second_tab_is_refused(stack, db):
    # GIVEN a quarantined mail, fixed at the source
    qid = quarantine_mail_without_message_id(stack, db)
    add_mail(stack, "m1", "<m1@example.com>")
    request = {"operator": "alice", "note": "mail fixed"}
    # WHEN the replay button is clicked twice (same key) and then from another tab (a new key)
    first = act(stack, f"quarantine/{qid}/replay", request, key="tab1-click-1")
    again = act(stack, f"quarantine/{qid}/replay", request, key="tab1-click-1")
    other_tab = act(stack, f"quarantine/{qid}/replay", request, key="tab2-click-1")
    stack.drain()
    # THEN one replay happened: the double click got the first answer, the other tab a 409
    assert first.status == 200 and first.json()["repeated"] is False
    assert again.status == 200 and again.json()["repeated"] is True
    assert again.json()["replay_id"] == first.json()["replay_id"]
    assert other_tab.status == 409 and other_tab.json()["error"] == "conflict"
    assert db.execute("SELECT requested_by, note, outcome FROM replay_log").fetchall() == [
        ("alice", "mail fixed", "ticket")
    ]
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    # AND the same key with another body is refused, not run
    reused = act(stack, f"quarantine/{qid}/resolve", request, key="tab1-click-1")
    assert reused.status == 422 and reused.json()["error"] == "idempotency_key_reused"


def test_a_send_in_review_is_settled_once_with_the_operators_decision(stack, db):
    # GIVEN a send whose outcome nobody knows, in review
    send_id = post_send(stack, send_body("hi"), key="console-send-1").json()["id"]
    db.execute(
        "UPDATE send_queue SET status = 'review', last_error = 'timeout after the request left' WHERE id = %s",
        (send_id,),
    )
    listed = get(stack, "sends?status=review").json()["items"]
    assert [(s["id"], s["last_error"]) for s in listed] == [(send_id, "timeout after the request left")]
    assert get(stack, f"sends/{send_id}").json()["payload"] == {"text": "hi"}
    # WHEN 'sent' is chosen without the provider's id, then with it, then again from another tab
    missing = act(stack, f"sends/{send_id}/resolve", {"operator": "bob", "note": "seen", "decision": "sent"})
    settled = act(
        stack,
        f"sends/{send_id}/resolve",
        {"operator": "bob", "note": "seen in the chat", "decision": "sent", "provider_message_id": "msg-9"},
        key="settle-tab-1",
    )
    other_tab = act(
        stack, f"sends/{send_id}/resolve", {"operator": "eve", "note": "x", "decision": "drop"}, key="settle-tab-2"
    )
    # THEN the first is a 400, the second settles it with a ledger row, the third changes nothing
    assert missing.status == 400 and missing.json()["error"] == "missing_message_id"
    assert settled.status == 200 and settled.json()["status"] == "sent"
    assert other_tab.status == 409
    assert db.execute("SELECT status::text, provider_message_id FROM send_queue").fetchall() == [("sent", "msg-9")]
    assert db.execute("SELECT settled_by, provider_message_id FROM sent_messages").fetchall() == [("operator", "msg-9")]


@pytest.mark.parametrize(
    ("method", "path", "payload", "key", "status", "code"),
    [
        ("GET", "quarantine/abc", None, None, 400, "invalid_id"),
        ("GET", "quarantine/999", None, None, 404, "not_found"),
        ("GET", "quarantine?status=weird", None, None, 400, "invalid_status"),
        ("GET", "events?limit=0", None, None, 400, "invalid_limit"),
        ("GET", "events?since=yesterday", None, None, 400, "invalid_since"),
        ("GET", "events?provider=Graph%3BDROP", None, None, 400, "invalid_provider"),
        ("GET", "trace", None, None, 400, "missing_key"),
        ("GET", "nothing/here", None, None, 404, "not_found"),
        ("DELETE", "quarantine", None, None, 405, "method_not_allowed"),
        ("POST", "quarantine/1/resolve", {"operator": "a", "note": "n"}, None, 400, "missing_idempotency_key"),
        ("POST", "quarantine/1/resolve", "{not json", "key-bad-json", 400, "invalid_json"),
        ("POST", "quarantine/1/resolve", "[1]", "key-a-list", 400, "invalid_body"),
        ("POST", "quarantine/1/resolve", {"note": "n"}, "key-no-operator", 400, "missing_operator"),
        ("POST", "quarantine/1/resolve", {"operator": "a"}, "key-no-note", 400, "missing_note"),
        ("POST", "quarantine/1/resolve", {"operator": "a", "note": "n"}, "key-no-row", 404, "not_found"),
        (
            "POST",
            "sends/1/resolve",
            {"operator": "a", "note": "n", "decision": "maybe"},
            "key-decision",
            400,
            "invalid_decision",
        ),
        ("POST", "jobs/nobody/trigger", {"operator": "a"}, "key-no-user", 404, "not_found"),
        ("GET", "dlq?limit=51", None, None, 400, "invalid_limit"),
        ("PUT", "dlq", None, None, 405, "method_not_allowed"),
        ("POST", "dlq/replay", {"operator": "a", "limit": 0}, "key-dlq-limit", 400, "invalid_limit"),
        ("POST", "dlq/replay", {"operator": "a", "limit": "5"}, "key-dlq-limit-text", 400, "invalid_limit"),
        ("POST", "dlq/replay", {"limit": 5}, "key-dlq-no-operator", 400, "missing_operator"),
        ("POST", "quarantine/1/replay", {"operator": "a", "payload": "[]"}, "key-payload-list", 400, "invalid_payload"),
        ("POST", "quarantine/1/replay", {"operator": "a", "payload": "{x"}, "key-payload-text", 400, "invalid_payload"),
    ],
)
def test_bad_input_gets_its_status_and_a_json_body(stack, db, method, path, payload, key, status, code):
    headers = {"content-type": "application/json", **({"idempotency-key": key} if key else {})}
    raw = "" if payload is None else payload if isinstance(payload, str) else json.dumps(payload)
    answer = stack.invoke_http(FUNCTION, method, BASE + path, raw, headers)
    assert (answer.status, answer.json()["error"]) == (status, code), answer.json()
    assert answer.headers["cache-control"] == "no-store"
    # AND a refused action leaves its key free: nothing recorded
    assert db.execute("SELECT count(*) FROM console_actions WHERE answer IS NULL").fetchone()[0] == 0


def test_no_secret_reaches_an_answer_even_inside_a_quarantined_body(stack, db):
    # GIVEN a quarantined Graph notification: its raw body carries the clientState secret
    qid = quarantine_mail_without_message_id(stack, db)
    raw = db.execute("SELECT raw FROM quarantine WHERE id = %s", (qid,)).fetchone()[0]
    assert TEST_SECRETS["GRAPH_CLIENT_STATE"] in raw
    # WHEN every read endpoint is asked
    answers = [
        get(stack, path).body.decode()
        for path in ("overview", "events", f"trace?key={KEY_M1}", "quarantine?status=all", f"quarantine/{qid}", "jobs")
    ]
    # THEN no secret value appears in any answer, and the redaction is visible where it happened
    for text in answers:
        for name, value in TEST_SECRETS.items():
            assert value not in text, f"{name} leaked"
    assert json.loads(json.loads(answers[4])["raw"])["clientState"] == "[redacted]"


def test_overview_events_and_trace_tell_what_happened_to_one_event(stack, db):
    # GIVEN one mail delivered, made into a ticket
    add_mail(stack, "m1", "<m1@example.com>")
    assert post(stack, body(item("m1"))).json()["accepted"] == 1
    stack.drain()
    # WHEN the overview, the search and the trace are read
    graph = get(stack, "overview?hours=2").json()["providers"]["graph"]
    found = get(stack, "events?key=graph%3A&provider=graph").json()["items"]
    trace = get(stack, f"trace?key={KEY_M1}").json()
    # THEN they agree: one event, one effect, the ticket
    assert (graph["events"], graph["effects"], graph["open_quarantine"]) == (1, 1, 0)
    assert [(e["event_key"], e["outcome"]) for e in found] == [(KEY_M1, "ticket")]
    assert [e["effect"] for e in trace["effects"]] == ["ticket"]
    # AND a key prefix with LIKE wildcards matches them literally
    assert get(stack, "events?key=graph%25").json()["items"] == []


def test_the_page_is_static_with_a_strict_policy_and_never_reaches_the_api(stack):
    page = stack.invoke_http(FUNCTION, "GET", "http://local/console")
    script = stack.invoke_http(FUNCTION, "GET", "http://local/console/static/console.js")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    html = page.body.decode()
    assert "<script src=" in html and "<script>" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+\s*=", html), "an inline event handler"
    assert script.status == 200 and not re.search(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", script.body.decode()
    )
    for path in ("/console/static/../api/overview", "/console/static/secrets.json", "/console/static/"):
        assert stack.invoke_http(FUNCTION, "GET", "http://local" + path).status == 404


def test_graph_subscriptions_show_expiry_and_a_resync_is_asked_once(stack, db):
    # GIVEN a watched mailbox whose live subscription expires in 10 hours
    db.execute("INSERT INTO graph_mailboxes (mailbox) VALUES ('help@example.com')")
    db.execute(
        "INSERT INTO graph_subscriptions (subscription_id, mailbox, resource, client_state_id, expires_at, status)"
        " VALUES ('sub-1', 'help@example.com', 'users/help@example.com/messages', 'fp', now() + interval '10 hours',"
        " 'active')"
    )
    # WHEN the console lists them and asks for a resync (twice with one key), and for an unknown mailbox
    listed = get(stack, "graph").json()["items"]
    first = act(stack, "graph/help@example.com/resync", {"operator": "ops"}, key="resync-key-1")
    again = act(stack, "graph/help@example.com/resync", {"operator": "ops"}, key="resync-key-1")
    unknown = act(stack, "graph/nobody@example.com/resync", {"operator": "ops"}, key="resync-key-2")
    # THEN the subscription and its expiry are shown, the resync is wanted once, the unknown mailbox is a 404
    assert [(r["mailbox"], r["subscription_id"]) for r in listed] == [("help@example.com", "sub-1")]
    assert (first.status, first.json()["repeated"], again.json()["repeated"]) == (200, False, True)
    assert db.execute("SELECT resync_wanted_at IS NOT NULL FROM graph_mailboxes").fetchone() == (True,)
    assert unknown.status == 404


def test_the_events_dlq_is_listed_then_replayed_once_with_the_operator_recorded(stack, db):
    # GIVEN Graph failing for longer than every retry: the event ends in the events DLQ
    add_mail(stack, "m1", "<m1@example.com>")
    stack.fakes.behaviours["graph.get_message"] = Behaviour(fail_times=1000, fail_status=503)
    post(stack, body(item("m1")))
    stack.drain()
    assert stack.queue_depth("EventsDeadLetterQueue") == 1
    # WHEN the console lists the DLQ (a look: nothing taken), Graph is back, and Replay is clicked twice
    answer = get(stack, "dlq")
    assert [(d["key"], d["provider"], d["receives"] > 0) for d in answer.json()["items"]] == [(KEY_M1, "graph", True)]
    for name, value in TEST_SECRETS.items():
        assert value not in answer.body.decode(), f"{name} leaked"
    assert stack.queue_depth("EventsDeadLetterQueue") == 1
    stack.fakes.behaviours.pop("graph.get_message")
    request = {"operator": "carol", "note": "Graph outage over", "limit": 10}
    first = act(stack, "dlq/replay", request, key="dlq-click-1")
    again = act(stack, "dlq/replay", request, key="dlq-click-1")
    stack.drain()
    # THEN one replay: the second click got the first answer, one ticket, the DLQ empty, the operator recorded
    assert first.status == 200 and first.json()["count"] == 1 and first.json()["repeated"] is False
    assert [(r["key"], r["previous_outcome"]) for r in first.json()["replayed"]] == [(KEY_M1, None)]
    assert (
        again.status == 200
        and again.json()["repeated"] is True
        and again.json()["replayed"] == first.json()["replayed"]
    )
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    assert stack.queue_depth("EventsDeadLetterQueue") == 0
    assert db.execute("SELECT quarantine_id, requested_by, note, outcome FROM replay_log").fetchall() == [
        (None, "carol", "Graph outage over", "ticket")
    ]
    # AND a new key on an empty DLQ replays nothing
    empty = act(stack, "dlq/replay", request, key="dlq-click-2")
    assert (empty.status, empty.json()["count"]) == (200, 0)
    assert get(stack, "dlq").json()["items"] == []


def test_an_unreadable_item_is_replayed_once_from_a_corrected_payload(stack, db):
    # GIVEN an authentic Graph item without resourceData.id: quarantined by the worker
    add_mail(stack, "m1", "<m1@example.com>")
    broken = item("m1")
    del broken["resourceData"]["id"]
    post(stack, body(broken))
    stack.drain()
    qid, qkey, raw = db.execute("SELECT id, event_key, raw FROM quarantine").fetchone()
    # WHEN the payload is not a JSON object, then replayed as it is, then corrected (twice with one key)
    for n, bad in enumerate(("{not json", "[1, 2]", "NaN", 42)):
        refused = act(stack, f"quarantine/{qid}/replay", {"operator": "dan", "payload": bad}, key=f"bad-payload-{n}")
        assert (refused.status, refused.json()["error"]) == (400, "invalid_payload"), refused.json()
    as_is = act(stack, f"quarantine/{qid}/replay", {"operator": "dan"}, key="as-is-key-1")
    assert as_is.status == 409 and "payload" in as_is.json()["message"]
    fixed = json.loads(raw)
    fixed["resourceData"]["id"] = "m1"
    request = {"operator": "dan", "note": "id restored", "payload": json.dumps(fixed, indent=2)}
    first = act(stack, f"quarantine/{qid}/replay", request, key="fixed-key-1")
    again = act(stack, f"quarantine/{qid}/replay", request, key="fixed-key-1")
    stack.drain()
    # THEN one replay under the item's own key, one ticket, the lineage kept, the operator recorded
    assert first.status == 200 and first.json()["key"] == KEY_M1, first.json()
    assert again.json()["repeated"] is True and again.json()["replay_id"] == first.json()["replay_id"]
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    assert db.execute("SELECT requested_by, note, replayed_key, outcome FROM replay_log").fetchall() == [
        ("dan", "id restored", KEY_M1, "ticket")
    ]
    assert db.execute("SELECT replay_of FROM event_log WHERE event_key = %s", (KEY_M1,)).fetchone() == (qkey,)
    assert db.execute("SELECT count(*) FROM console_actions WHERE answer IS NULL").fetchone()[0] == 0
