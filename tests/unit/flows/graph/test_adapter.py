"""The Graph adapter without any network: handshake, per-item clientState, keys and groups."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack.lambda_runtime import apigw_event
from exactly_once.core.errors import BadRequestError, UnauthorizedError
from exactly_once.core.events import QUARANTINE_KIND
from exactly_once.flows.graph.adapter import GraphAdapter, item_key, mailbox_of
from exactly_once.ingest.apigw import Request
from tests.graph_support import item

SECRET = "test-client-state-0123456789"


def request(body: object, query: str = "") -> Request:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Request.from_apigw_v2(apigw_event("POST", f"http://h/webhooks/graph{query}", raw))


def test_handshake_answers_the_decoded_token_as_plain_text():
    answer = GraphAdapter(SECRET).handshake(request(b"", "?validationToken=a%2Bb%20c"))
    assert answer == {"statusCode": 200, "headers": {"content-type": "text/plain; charset=utf-8"}, "body": "a+b c"}


@pytest.mark.parametrize("query", ["?validationToken=", "?validationToken=" + "x" * 1025])
def test_handshake_refuses_empty_or_huge_tokens(query):
    with pytest.raises(BadRequestError):
        GraphAdapter(SECRET).handshake(request(b"", query))


def test_delivery_without_token_is_not_a_handshake():
    assert GraphAdapter(SECRET).handshake(request({"value": []})) is None


def test_split_keys_each_item_and_groups_by_mailbox():
    split = GraphAdapter(SECRET).split(request({"value": [item("m1"), item("m2", change="updated")]}))
    assert [e.kind for e in split.events] == ["created", "updated"]
    assert split.events[0].key == 'graph:7f105c7d-2dc5-4530-97cd-4e7ae6534c07|created|m1|W/"etag-1"'
    assert {e.group for e in split.events} == {"graph:mailbox:6a7b1c2d-0000-4000-8000-000000000001"}


def test_split_rejects_forged_items_and_keeps_the_rest():
    split = GraphAdapter(SECRET).split(request({"value": [item("m1"), item("m2", client_state=SECRET[:-1])]}))
    assert (len(split.events), split.rejected) == (1, 1)


def test_split_with_only_forged_items_is_unauthorized():
    with pytest.raises(UnauthorizedError):
        GraphAdapter(SECRET).split(request({"value": [item("m1", client_state="nope"), 5, None]}))


def test_lifecycle_items_become_events_of_their_own():
    lifecycle = {"subscriptionId": "s", "clientState": SECRET, "lifecycleEvent": "missed"}
    (event,) = GraphAdapter(SECRET).split(request({"value": [lifecycle]})).events
    assert event.kind == "lifecycle:missed"
    assert event.key.startswith("graph:lifecycle:s|missed|")


def test_authentic_item_missing_fields_is_carried_to_quarantine():
    broken = item("m1")
    del broken["changeType"]
    (event,) = GraphAdapter(SECRET).split(request({"value": [broken]})).events
    assert event.kind == QUARANTINE_KIND
    assert json.loads(event.payload["raw"]) == broken


def test_mailbox_of_reads_users_segment_case_insensitively():
    assert mailbox_of({"resource": "Users/ABC/Messages/1"}) == "abc"
    assert mailbox_of({"resource": "/users/x/mailFolders('Inbox')/messages/1"}) == "x"
    assert mailbox_of({"resource": "subscriptions/1"}) is None


text = st.text(min_size=1, max_size=40)


@given(sub=text, change=st.sampled_from(["created", "updated", "deleted"]), rid=text, etag=st.text(max_size=20))
def test_key_is_stable_and_distinguishes_every_part(sub, change, rid, etag):
    it = {"subscriptionId": sub, "changeType": change, "resourceData": {"id": rid, "@odata.etag": etag}}
    assert item_key(it) == item_key(json.loads(json.dumps(it)))
    other = {**it, "resourceData": {"id": rid + "x", "@odata.etag": etag}}
    assert item_key(other) != item_key(it)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=20,
    )
)
def test_split_never_raises_anything_but_a_4xx(value):
    with contextlib.suppress(BadRequestError, UnauthorizedError):
        GraphAdapter(SECRET).split(request({"value": [value]} if not isinstance(value, dict) else value))
