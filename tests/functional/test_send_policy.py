"""The delivery policy of queued sends has one lookup (send_request.default_policy, SEND_POLICY_<CHANNEL>),
shared by POST /sends and the WhatsApp bot replies the event worker queues."""

from __future__ import annotations

import pytest

from exactly_once.sends import request as send_request
from tests.send_support import post_send
from tests.whatsapp_support import one_text, post


def _policies(db) -> dict[str, str]:
    return dict(db.execute("SELECT idempotency_key, policy::text FROM send_queue").fetchall())


@pytest.mark.parametrize("policy", ["at_most_once", "at_least_once"])
def test_bot_replies_and_post_sends_follow_the_same_whatsapp_policy(stack, db, monkeypatch, policy):
    # GIVEN the deployment's WhatsApp policy
    monkeypatch.setenv(send_request.policy_variable("whatsapp"), policy)
    # WHEN a customer's message gets a bot reply (queued by the event worker), and a send is posted
    assert post(stack, one_text("wamid.P1", "test")).status == 200
    stack.drain()
    body = {"channel": "whatsapp", "sender_account": "106540352242922", "recipient": "16505551234", "text": "hi"}
    assert post_send(stack, body, key="wa-policy").status == 201
    # THEN both rows carry that policy
    assert _policies(db) == {"reply:wamid.P1": policy, "wa-policy": policy}


def test_a_bad_policy_setting_queues_no_reply(stack, db, monkeypatch):
    monkeypatch.setenv("SEND_POLICY_WHATSAPP", "sometimes")
    assert post(stack, one_text("wamid.P2", "test")).status == 200
    stack.drain(rounds=3)
    # the event fails (SQS retries it, then the DLQ keeps it): nothing half-stored
    assert db.execute("SELECT count(*) FROM send_queue").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM whatsapp_messages").fetchone()[0] == 0
