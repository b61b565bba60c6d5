"""The worked example in the README's "Adding a provider" is real code: run it and check it behaves as the page says."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import types
from pathlib import Path

import pytest

from devstack.lambda_runtime import apigw_event
from exactly_once.core.errors import UnauthorizedError
from exactly_once.core.events import QUARANTINE_KIND
from exactly_once.ingest.apigw import Request

DOC = Path(__file__).resolve().parents[4] / "README.md"
SECRET = "acme-secret-for-the-docs-example"
NOW = 1_795_334_400


@pytest.fixture(scope="module")
def acme() -> types.ModuleType:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    (source,) = [b for b in blocks if "class AcmeAdapter" in b]
    module = types.ModuleType("acme_docs_example")
    exec(compile(source, str(DOC), "exec"), module.__dict__)
    return module


def delivery(body: bytes, stamp: int = NOW, secret: str = SECRET) -> Request:
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-acme-timestamp": str(stamp),
        "x-acme-signature": f"sha256={digest}",
    }
    return Request.from_apigw_v2(apigw_event("POST", "http://h/webhooks/acme", body, headers))


def test_the_documented_adapter_authenticates_and_keys_events(acme):
    adapter = acme.AcmeAdapter(SECRET, clock=lambda: NOW + 5)
    body = json.dumps({"id": "ev_1", "type": "invoice.paid", "customer_id": "cus_9"}).encode()
    adapter.authenticate(delivery(body))
    (event,) = adapter.split(delivery(body)).events
    assert (event.provider, event.key, event.group, event.kind) == ("acme", "acme:ev_1", "acme:cus_9", "invoice.paid")


@pytest.mark.parametrize(("stamp", "secret"), [(NOW - 301, SECRET), (NOW + 301, SECRET), (NOW, "guessed")])
def test_the_documented_adapter_refuses_stale_future_and_forged(acme, stamp, secret):
    adapter = acme.AcmeAdapter(SECRET, clock=lambda: NOW)
    with pytest.raises(UnauthorizedError):
        adapter.authenticate(delivery(b'{"id": "ev_1"}', stamp, secret))


def test_the_documented_adapter_quarantines_what_it_cannot_read(acme):
    (event,) = acme.AcmeAdapter(SECRET).split(delivery(b"[1, 2]")).events
    assert event.kind == QUARANTINE_KIND
