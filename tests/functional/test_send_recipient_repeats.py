"""The alarms the incidents asked for, driven through the real code paths: the same recipient messaged more
than once within an hour under different keys (the LinkedIn sends incident) counts RecipientRepeats, and the
share of a webhook POST's events that were already delivered is DuplicateShare (the Graph mail incident)."""

from __future__ import annotations

import json
from typing import Any

from exactly_once.core.telemetry import Metric
from tests import emf
from tests.graph_support import add_mail, body, item, post
from tests.send_support import delivered, drain, post_send, send_body


def values(capsys: Any, provider: str, name: str) -> list[float]:
    """Every value of one metric, in the order the EMF blobs were printed (one blob per invocation)."""
    found: list[float] = []
    for line in capsys.readouterr().out.splitlines():
        if '"_aws"' in line and (blob := json.loads(line)).get("provider") == provider and name in blob:
            found.extend(blob[name] if isinstance(blob[name], list) else [blob[name]])
    return found


def test_a_caller_retrying_with_fresh_keys_double_messages_a_person_and_it_is_counted(stack, db, capsys):
    # GIVEN a caller that sends the same text to chat_1 twice under two keys, and one message to chat_2
    capsys.readouterr()
    for key, chat in (("k-first", "chat_1"), ("k-retry-with-a-new-key", "chat_1"), ("k-other", "chat_2")):
        assert post_send(stack, send_body("Hi Ivonne", chat=chat), key=key).status == 201
    drain(stack)
    # THEN both reached the person (keys cannot stop this) and the second one is counted under its channel
    assert delivered(stack, "chat_1", "Hi Ivonne") == 2 and delivered(stack, "chat_2") == 1
    assert emf.emitted(capsys)[("unipile", Metric.RECIPIENT_REPEATS)] == 1


def test_sends_to_one_recipient_more_than_an_hour_apart_are_not_counted(stack, db, capsys):
    assert post_send(stack, send_body("Step 1"), key="k-step-1").status == 201
    drain(stack)
    db.execute("UPDATE sent_messages SET sent_at = now() - interval '61 minutes'")
    capsys.readouterr()
    assert post_send(stack, send_body("Step 2"), key="k-step-2").status == 201
    drain(stack)
    assert delivered(stack, "chat_1") == 2
    assert emf.emitted(capsys)[("unipile", Metric.RECIPIENT_REPEATS)] == 0


def test_duplicate_share_is_the_percent_of_a_posts_events_already_delivered(stack, db, capsys):
    # GIVEN a Graph notification, then its redelivery, then a POST of one old and one new notification
    add_mail(stack, "m-1", "<m1@example.com>")
    add_mail(stack, "m-2", "<m2@example.com>")
    capsys.readouterr()
    assert post(stack, body(item("m-1"))).status == 202
    assert post(stack, body(item("m-1"))).status == 202
    assert post(stack, body(item("m-1"), item("m-2"))).status == 202
    # THEN the three POSTs report 0 %, 100 % and 50 %: the alarm's Average over them is 50 %
    shares = values(capsys, "graph", Metric.DUPLICATE_SHARE)
    assert shares == [0.0, 100.0, 50.0]
