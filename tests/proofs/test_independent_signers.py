"""Our verifiers against deliveries signed by the providers' own packages (code this project did not write):
livekit-api's AccessToken (LiveKit's server signs webhooks with it), standardwebhooks, stripe and slack_sdk.
Random bodies signed by the SDK must pass our adapter's ``authenticate``; the same bytes changed by one byte,
or signed with another secret, must not. GitHub, WhatsApp and Unipile publish no signing package: their tests
sign by the documented algorithm (tests/generic_support.py, tests/whatsapp_support.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exactly_once.errors import UnauthorizedError
from exactly_once.http import Request
from tests import generic_support as g
from tests import livekit_support as lk
from tests.harness import TEST_SECRETS

EXAMPLES = 60
bodies = st.dictionaries(
    st.sampled_from(["id", "event", "text", "n"]), st.text(max_size=40) | st.integers(), min_size=1
)
bodies = bodies.map(lambda d: json.dumps(d, ensure_ascii=False).encode())


@pytest.fixture(scope="module", autouse=True)
def _secrets() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in TEST_SECRETS}
    os.environ.update(TEST_SECRETS)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _adapters() -> dict[str, tuple[Any, str, Callable[[bytes, str], dict[str, str]], dict[str, str]]]:
    from exactly_once.adapters.livekit import LiveKitAdapter
    from exactly_once.adapters.slack import SlackAdapter
    from exactly_once.adapters.standard_webhooks import StandardWebhooksAdapter
    from exactly_once.adapters.stripe import StripeAdapter

    return {
        # provider: (adapter, path, sign(body, secret) with the provider's package, path params)
        "livekit": (
            LiveKitAdapter(lk.API_KEY, lk.API_SECRET),
            "/webhooks/livekit",
            lambda b, s: lk.headers(b, secret=s),
            {},
        ),
        "standard": (
            StandardWebhooksAdapter.from_env(),
            "/webhooks/standard/acme",
            lambda b, s: g.standard_headers(b, "msg_1", secret=s),
            {"source": "acme"},
        ),
        "stripe": (StripeAdapter.from_env(), "/webhooks/stripe", lambda b, s: g.stripe_headers(b, secret=s), {}),
        "slack": (SlackAdapter.from_env(), "/webhooks/slack", lambda b, s: g.slack_headers(b, secret=s), {}),
    }


OTHER = {
    "livekit": "another-livekit-secret-0123456789abcdef0123",
    "standard": "whsec_" + "QW5vdGhlclNlY3JldEFub3RoZXJTZWNyZXQ=",
    "stripe": "whsec_another",
    "slack": "another-slack-secret",
}
RIGHT = {
    "livekit": lk.API_SECRET,
    "standard": g.STANDARD_SECRET,
    "stripe": g.STRIPE_SECRET,
    "slack": g.SLACK_SECRET,
}


def _passes(adapter: Any, path: str, body: bytes, headers: dict[str, str], params: dict[str, str]) -> bool:
    request = Request("POST", path, body, {k.lower(): v for k, v in headers.items()}, {}, params)
    try:
        adapter.authenticate(request)
    except UnauthorizedError:
        return False
    return True


@pytest.mark.parametrize("provider", sorted(RIGHT))
def test_sdk_signed_deliveries_pass_and_tampered_ones_fail(proof, provider):
    adapter, path, sign, params = _adapters()[provider]
    seen = {"ok": 0, "tampered": 0, "wrong_secret": 0}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=bodies, position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=127))
    def check(body: bytes, position: int, flip: int) -> None:
        headers = sign(body, RIGHT[provider])
        assert _passes(adapter, path, body, headers, params), "signed by the provider's package, refused by us"
        seen["ok"] += 1
        i = position % len(body)
        tampered = body[:i] + bytes([body[i] ^ flip]) + body[i + 1 :]
        assert not _passes(adapter, path, tampered, headers, params), "one byte changed, still accepted"
        seen["tampered"] += 1
        assert not _passes(adapter, path, body, sign(body, OTHER[provider]), params), "another secret accepted"
        seen["wrong_secret"] += 1

    check()
    package = {"livekit": "livekit-api", "standard": "standardwebhooks", "stripe": "stripe", "slack": "slack_sdk"}
    proof.record(
        kind="signer",
        flow=provider,
        name=f"signed by {package[provider]}, random bodies",
        cases=sum(seen.values()),
        held=(
            f"{seen['ok']} accepted; {seen['tampered']} one-byte changes and "
            f"{seen['wrong_secret']} other secrets refused"
        ),
    )
