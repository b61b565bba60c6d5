"""Graph's body limit: notifications are small, and the clientState is inside the body, so a flood is refused by
size before any byte is parsed (issue 16: Graph parsed up to 1 MiB of anyone's JSON)."""

from __future__ import annotations

import json

import pytest

from devstack.lambda_runtime import apigw_event
from exactly_once.core.errors import PayloadTooLargeError
from exactly_once.flows.graph.adapter import MAX_BODY_BYTES, GraphAdapter
from exactly_once.ingest.apigw import Request
from exactly_once.ingest.pipeline import WebhookIngest
from tests.graph_support import body, item
from tests.harness import TEST_SECRETS


class NeverParsed(GraphAdapter):
    def split(self, request):  # the limit comes first: reaching the parser is the bug
        raise AssertionError("an oversized body was parsed")


def test_graph_takes_256_kib_and_a_large_real_batch_fits():
    assert MAX_BODY_BYTES == 256 * 1024
    assert GraphAdapter("state").max_body_bytes == MAX_BODY_BYTES
    # 200 notifications (Graph batches several subscriptions' items) are a fraction of it
    batch = body(*(item(f"m{i}", client_state=TEST_SECRETS["GRAPH_CLIENT_STATE"]) for i in range(200)))
    assert len(batch.encode()) < MAX_BODY_BYTES / 2


def test_an_oversized_body_is_refused_before_it_is_parsed():
    adapter = NeverParsed("state")
    pipeline = WebhookIngest(adapter, None, None, adapter.max_body_bytes)  # type: ignore[arg-type]
    flood = json.dumps({"value": [{"clientState": "guess"}] * 20_000}).encode()
    assert len(flood) > MAX_BODY_BYTES
    with pytest.raises(PayloadTooLargeError):
        pipeline._handle(Request.from_apigw_v2(apigw_event("POST", "http://x/webhooks/graph", flood, {})), None)


def test_the_limit_is_a_setting(monkeypatch):
    monkeypatch.setenv("GRAPH_CLIENT_STATE", "state")
    monkeypatch.setenv("GRAPH_MAX_BODY_BYTES", "65536")
    assert GraphAdapter.from_env().max_body_bytes == 65536
