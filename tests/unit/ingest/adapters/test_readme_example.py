"""The worked example in the README's "Adding a provider" is real code: run it and check it behaves as the page says."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sys
import time
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


@pytest.fixture
def acme_flow(monkeypatch) -> types.ModuleType:
    """The README's folder, as Python would import it: flows/acme/adapter.py and flows/acme/__init__.py."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    (adapter_source,) = [b for b in blocks if "class AcmeAdapter" in b]
    (declaration,) = [b for b in blocks if "FLOW = Flow(" in b and "acme" in b]
    package = types.ModuleType("exactly_once.flows.acme")
    package.__path__ = []  # a package: its parts are imported as submodules
    adapter = types.ModuleType("exactly_once.flows.acme.adapter")
    exec(compile(adapter_source, str(DOC), "exec"), adapter.__dict__)
    monkeypatch.setitem(sys.modules, "exactly_once.flows.acme", package)
    monkeypatch.setitem(sys.modules, "exactly_once.flows.acme.adapter", adapter)
    exec(compile(declaration, str(DOC), "exec"), package.__dict__)
    return package


def test_the_documented_declaration_names_parts_that_load(acme_flow, monkeypatch):
    from exactly_once.flows.generic import processor
    from exactly_once.worker import EventWorker

    (provider,) = acme_flow.FLOW.providers
    assert (provider.name, provider.route) == ("acme", "/webhooks/acme")
    factory = provider.adapter.load()
    assert factory.__self__.__name__ == "AcmeAdapter" and factory.__self__.provider == "acme"
    monkeypatch.setenv("ACME_WEBHOOK_SECRET", SECRET)
    adapter = factory()
    body = json.dumps({"id": "ev_2", "type": "invoice.paid"}).encode()
    adapter.authenticate(delivery(body, stamp=int(time.time())))
    # The worker settles the provider's events with the processor the declaration names.
    assert EventWorker({"acme": provider}).processor("acme") is processor.process
