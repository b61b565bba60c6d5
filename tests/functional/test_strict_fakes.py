"""The fake providers refuse what the real ones refuse, and a refused call is never an effect.

A fake too kind to refuse a malformed send counts it as delivered and hides a client bug; these
tests pin each fake's refusals (credential, request shape) and the Unipile listing's pages.
"""

from __future__ import annotations

import json
import time
from typing import Any

import urllib3

from devstack import fake_unipile, fake_whatsapp
from tests.harness import TEST_SECRETS
from tests.send_support import behave, delivered, drain, post_send, reap, row, send_body

HTTP = urllib3.PoolManager()


def _post(url: str, body: Any = None, *, headers: dict[str, str], fields: dict[str, str] | None = None) -> int:
    if fields is not None:
        return HTTP.request("POST", url, fields=fields, headers=headers).status
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HTTP.request("POST", url, body=raw, headers={"content-type": "application/json", **headers}).status


def test_whatsapp_refuses_a_wrong_token_and_a_malformed_send_and_counts_neither(stack):
    url = f"{stack.fakes.url}/whatsapp/v21.0/PHONE/messages"
    good = {"authorization": f"Bearer {TEST_SECRETS['WHATSAPP_ACCESS_TOKEN']}"}
    text = {"messaging_product": "whatsapp", "to": "15550001111", "type": "text", "text": {"body": "hi"}}
    # GIVEN sends the Cloud API would refuse: another token, no messaging_product, no text body, a form body
    assert _post(url, text, headers={"authorization": "Bearer not-the-token"}) == 401
    assert _post(url, {**text, "messaging_product": None}, headers=good) == 400
    assert _post(url, {**text, "text": {}}, headers=good) == 400
    assert _post(url, {**text, "type": "carrier-pigeon"}, headers=good) == 400
    assert _post(url, headers=good, fields={"to": "15550001111", "body": "hi"}) == 400
    # THEN nothing was sent: each is recorded as refused, none counted as a call or an effect
    assert stack.fakes.refused("whatsapp.send") == 5
    assert stack.fakes.count("whatsapp.send") == stack.fakes.delivered("whatsapp.send") == 0
    assert fake_whatsapp.delivered(stack.fakes, "15550001111") == 0
    assert stack.fakes.effects() == []
    # WHEN the same send comes right
    assert _post(url, text, headers=good) == 200
    # THEN it is the one delivered
    assert stack.fakes.delivered("whatsapp.send", "15550001111:hi") == 1
    assert fake_whatsapp.delivered(stack.fakes, "15550001111", "hi") == 1


def test_openai_refuses_a_wrong_key_and_a_body_without_model_or_messages(stack):
    url = f"{stack.fakes.url}/openai/v1/chat/completions"
    good = {"authorization": f"Bearer {TEST_SECRETS['LLM_API_KEY']}"}
    body = {"model": "m", "messages": [{"role": "user", "content": "room_sid: RM_1\nanalyse"}]}
    assert _post(url, body, headers={"authorization": "Bearer sk-someone-else"}) == 401
    assert _post(url, body, headers={}) == 401
    assert _post(url, {**body, "model": ""}, headers=good) == 400
    assert _post(url, {**body, "messages": []}, headers=good) == 400
    assert _post(url, {**body, "messages": [{"role": "robot", "content": "x"}]}, headers=good) == 400
    assert _post(url, b"[]", headers=good) == 400
    assert stack.fakes.refused("llm.chat") == 6
    assert stack.fakes.count("llm.chat") == 0
    assert _post(url, body, headers=good) == 200
    assert stack.fakes.delivered("llm.chat", "RM_1") == 1


def test_unipile_refuses_a_wrong_key_a_urlencoded_send_and_a_chat_without_attendees(stack):
    base = f"{stack.fakes.url}/unipile/api/v1"
    good = {"x-api-key": TEST_SECRETS["UNIPILE_API_KEY"]}
    assert _post(f"{base}/chats/chat_1/messages", headers={"x-api-key": "nope"}, fields={"text": "hi"}) == 401
    urlencoded = HTTP.request(
        "POST", f"{base}/chats/chat_1/messages", fields={"text": "hi"}, encode_multipart=False, headers=good
    )
    assert urlencoded.status == 400
    assert _post(f"{base}/chats/chat_1/messages", {"text": "hi"}, headers=good) == 400  # JSON is not multipart
    assert _post(f"{base}/chats", headers=good, fields={"account_id": "acc_1", "text": "hi"}) == 400
    assert stack.fakes.refused("unipile.send") == 4
    assert stack.fakes.count("unipile.send") == 0 and delivered(stack, "chat_1") == 0
    # WHEN the sends come as multipart with the key
    assert _post(f"{base}/chats/chat_1/messages", headers=good, fields={"text": "hi"}) == 201
    started = HTTP.request(
        "POST", f"{base}/chats", fields={"account_id": "acc_1", "attendees_ids": "att_9", "text": "yo"}, headers=good
    )
    # THEN both are delivered, the new chat answered as Unipile answers it
    assert started.status == 201 and json.loads(started.data)["object"] == "ChatStarted"
    assert stack.fakes.delivered("unipile.send") == 2 and delivered(stack, "chat_1", "hi") == 1


def test_unipile_lists_both_sides_newest_first_in_pages(stack):
    # GIVEN a chat with 3 of our messages and 4 of theirs
    for i in range(3):
        stack.fakes.state["unipile_store"]("chat_p", f"ours {i}")
        fake_unipile.receive(stack.fakes, "chat_p", f"theirs {i}")
    fake_unipile.receive(stack.fakes, "chat_p", "theirs 3")
    url = f"{stack.fakes.url}/unipile/api/v1/chats/chat_p/messages"
    headers = {"x-api-key": TEST_SECRETS["UNIPILE_API_KEY"]}
    # WHEN it is listed 3 at a time, following the cursor
    texts, cursor, pages = [], "", 0
    while True:
        page = json.loads(HTTP.request("GET", f"{url}?limit=3{cursor}", headers=headers).data)
        texts += [(m["text"], m["is_sender"]) for m in page["items"]]
        pages += 1
        if not page["cursor"]:
            break
        cursor = f"&cursor={page['cursor']}"
    # THEN every message came once, newest first, in 3 pages, each side marked
    assert pages == 3
    assert texts == [
        ("theirs 3", 0),
        ("theirs 2", 0),
        ("ours 2", 1),
        ("theirs 1", 0),
        ("ours 1", 1),
        ("theirs 0", 0),
        ("ours 0", 1),
    ]
    assert HTTP.request("GET", f"{url}?limit=251", headers=headers).status == 400
    assert delivered(stack, "chat_p") == 3  # ours only: their messages are not our effects


def test_reconciliation_finds_a_send_behind_a_page_of_replies(stack, db, monkeypatch):
    monkeypatch.setenv("SEND_PROVIDER_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    # GIVEN Unipile takes the message but answers after the client's timeout: the outcome is unknown
    behave(stack, "unipile.send", hang=2.0, hang_times=1)
    send_id = post_send(stack, send_body("Hi Nora", chat="chat_busy"), key="k-busy").json()["id"]
    drain(stack)
    assert row(db, send_id)["status"] == "unknown", row(db, send_id)
    time.sleep(1.2)  # the hung answer finishes at the fake
    # AND the other side answers with more messages than one page of the listing holds
    for i in range(120):
        fake_unipile.receive(stack.fakes, "chat_busy", f"reply {i}")
    # WHEN the reaper reconciles
    reap(["send_reconcile"])
    # THEN it followed the pages to our message: sent, by reconciliation, never resent
    assert row(db, send_id)["status"] == "sent"
    assert stack.fakes.count("unipile.list", "chat_busy") >= 2
    drain(stack)
    assert delivered(stack, "chat_busy", "Hi Nora") == 1
    assert stack.fakes.count("unipile.send") == 1
