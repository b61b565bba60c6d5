"""A clientState rotation: notifications on the previous secret and the new one both count, forged ones do not."""

from __future__ import annotations

import json

import pytest

from devstack.lambda_runtime import apigw_event
from exactly_once.core.errors import UnauthorizedError
from exactly_once.flows.graph.adapter import GraphAdapter
from exactly_once.ingest.apigw import Request
from tests.graph_support import item

NEW = "rotated-client-state-9876543210"
OLD = "test-client-state-0123456789"


def request(*items: object) -> Request:
    raw = json.dumps({"value": list(items)}).encode()
    return Request.from_apigw_v2(apigw_event("POST", "http://h/webhooks/graph", raw))


def test_a_mixed_batch_during_a_rotation_keeps_every_real_notification():
    # GIVEN subscriptions still on the old clientState and new ones on the rotated one
    adapter = GraphAdapter((NEW, OLD))
    batch = [
        item("old-1", client_state=OLD),
        item("new-1", client_state=NEW),
        item("forged", client_state=NEW[:-1]),
        item("old-2", client_state=OLD),
        {"subscriptionId": "s", "clientState": OLD, "lifecycleEvent": "missed"},
    ]
    # WHEN one POST carries them all
    split = adapter.split(request(*batch))
    # THEN only the forged item is refused; the rest become events, in order
    assert split.rejected == 1
    assert [e.payload.get("resourceData", {}).get("id") for e in split.events] == ["old-1", "new-1", "old-2", None]
    assert split.events[-1].kind == "lifecycle:missed"


def test_once_the_rotation_ends_the_old_clientstate_is_refused():
    adapter = GraphAdapter(NEW)
    with pytest.raises(UnauthorizedError):
        adapter.split(request(item("old-1", client_state=OLD)))


def test_an_empty_previous_clientstate_accepts_nothing_extra():
    # GRAPH_CLIENT_STATE_PREVIOUS unset or empty: an item with no or an empty clientState is still forged
    adapter = GraphAdapter((NEW, ""))
    with pytest.raises(UnauthorizedError):
        adapter.split(request(item("a", client_state=""), {**item("b"), "clientState": None}))


def test_from_env_reads_both_secrets(monkeypatch):
    monkeypatch.setenv("GRAPH_CLIENT_STATE", NEW)
    monkeypatch.setenv("GRAPH_CLIENT_STATE_PREVIOUS", OLD)
    split = GraphAdapter.from_env().split(request(item("x", client_state=OLD), item("y", client_state=NEW)))
    assert (len(split.events), split.rejected) == (2, 0)
