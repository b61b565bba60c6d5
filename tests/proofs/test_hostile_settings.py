"""Hostile settings: secrets too weak to trust stop the function at start, or open nothing once rotated in.

Issue 16: an operator token or a LiveKit API secret under 32 bytes can be guessed from the outside (the token)
or brute-forced from one captured webhook (the HS256 key). Each case sets the secret the way the stack does
(the function's environment), then starts the real handler module."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

import pytest

from devstack.lambda_runtime import add_code_paths
from exactly_once.core.errors import ConfigurationError
from tests.harness import TEST_SECRETS

WEAK = ["", "x", "short-operator-token", "y" * 31, "\u00e9" * 15]


def _start(module: str) -> object:
    add_code_paths()
    if module in sys.modules:
        return importlib.reload(sys.modules[module])
    return importlib.import_module(module)


def _refuses_to_start(monkeypatch: pytest.MonkeyPatch, name: str, module: str, value: str) -> bool:
    monkeypatch.delenv("APP_SECRET_ARN", raising=False)
    monkeypatch.setenv(name, value)
    try:
        _start(module)
    except ConfigurationError as exc:
        # refused for this secret (too short, or empty: not configured), not for a setting the test left out
        return "32 bytes" in str(exc) or f"secret {name} is not configured" in str(exc)
    return False


def test_weak_operator_tokens_never_authorize_and_stop_the_authorizer(monkeypatch, proof):
    failures: list[str] = []
    for weak in WEAK[1:]:  # "" is "not configured": the function starts and denies every request
        if not _refuses_to_start(monkeypatch, "API_TOKEN", "api_authorizer", weak):
            failures.append(f"started with a {len(weak.encode())}-byte token")
    # Rotated to a weak token after a good start: even the exact weak token is refused.
    monkeypatch.setenv("API_TOKEN", TEST_SECRETS["API_TOKEN"])
    authorizer = _start("api_authorizer")
    handler: Callable[..., dict[str, bool]] = authorizer.handler  # type: ignore[attr-defined]
    for weak in WEAK:
        monkeypatch.setenv("API_TOKEN", weak)
        event = {"routeKey": "POST /sends", "headers": {"authorization": f"Bearer {weak}"}}
        if handler(event, None)["isAuthorized"]:
            failures.append(f"a {len(weak.encode())}-byte token let its bearer in")
    assert not failures, failures
    proof.record(
        kind="hostile",
        flow="operator API",
        name="operator tokens under 32 bytes",
        cases=2 * len(WEAK) - 1,
        held=f"{len(WEAK) - 1} weak tokens stopped the authorizer at start; rotated in, {len(WEAK)} let nobody in",
    )


def test_weak_livekit_secrets_stop_the_livekit_ingest(monkeypatch, proof):
    monkeypatch.setenv("LIVEKIT_API_KEY", TEST_SECRETS["LIVEKIT_API_KEY"])
    started = [
        len(w.encode()) for w in WEAK if not _refuses_to_start(monkeypatch, "LIVEKIT_API_SECRET", "livekit_ingest", w)
    ]
    assert not started, f"started with secrets of {started} bytes"
    proof.record(
        kind="hostile",
        flow="livekit",
        name="API secrets under 32 bytes",
        cases=len(WEAK),
        held=f"{len(WEAK)} weak secrets stopped the ingest function at start, 0 started",
    )
