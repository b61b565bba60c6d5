"""Several WhatsApp business numbers on one stack: each reply leaves from the number the message came to, with
that number's own access token (a JSON map in WHATSAPP_ACCESS_TOKEN). The fake Cloud API accepts only the
test token, so a number mapped to another token is refused there: the token really is chosen per number."""

from __future__ import annotations

import json

import pytest

from devstack import fake_whatsapp
from exactly_once.sends import channels
from tests.harness import TEST_SECRETS
from tests.send_support import drain, post_send, row

GOOD = TEST_SECRETS["WHATSAPP_ACCESS_TOKEN"]


@pytest.fixture
def tokens(monkeypatch):
    def use(mapping: dict[str, str]) -> None:
        monkeypatch.setenv("WHATSAPP_ACCESS_TOKEN", json.dumps(mapping))
        channels.sender.cache_clear()  # the worker builds its sender once: rebuild it with these tokens

    yield use
    channels.sender.cache_clear()


def send(stack, number: str, customer: str, key: str) -> int:
    body = {"channel": "whatsapp", "sender_account": number, "recipient": customer, "payload": {"text": f"hi {key}"}}
    return int(post_send(stack, body, key=key).json()["id"])


def test_each_number_sends_with_its_own_token(stack, db, tokens):
    # GIVEN business A's number holds the right token, business B's another app's token
    tokens({"1110001": GOOD, "2220002": "business-b-token"})
    a = send(stack, "1110001", "15550000001", "num-a")
    b = send(stack, "2220002", "15550000002", "num-b")
    drain(stack)
    # THEN A's message left from A's number; B's was refused by the API for its token (a 401: failed, not retried)
    assert row(db, a)["status"] == "sent" and row(db, b)["status"] == "failed"
    sent = stack.fakes.state["whatsapp_sent"]
    assert [(m["phone_number_id"], m["to"]) for m in sent] == [("1110001", "15550000001")]
    assert fake_whatsapp.delivered(stack.fakes, "15550000002") == 0


def test_a_default_token_serves_the_numbers_not_named(stack, db, tokens):
    tokens({"2220002": "business-b-token", "*": GOOD})
    c = send(stack, "3330003", "15550000003", "num-c")
    drain(stack)
    assert row(db, c)["status"] == "sent"
    assert fake_whatsapp.delivered(stack.fakes, "15550000003", "hi num-c") == 1
