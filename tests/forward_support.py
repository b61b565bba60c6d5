"""Helpers for the forwarding tests: turn forwarding on at the fake receiver, deliver a signed event, read rows."""

from __future__ import annotations

from typing import Any

import pytest

from tests.generic_support import signed_standard
from tests.harness import Stack

RECEIVER = "/forward/hook"
KIND = "forward.receive"


def enable(stack: Stack, monkeypatch: pytest.MonkeyPatch, **extra: str) -> str:
    """FORWARD_URL at the fake receiver, in this process and in the stack's env (children read it)."""
    env = {"FORWARD_URL": f"{stack.fakes.url}{RECEIVER}", **extra}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stack.env.update(env)
    return env["FORWARD_URL"]


def deliver(stack: Stack, event_id: str) -> str:
    """A Standard Webhooks delivery from "acme" through the generic ingest; its event key."""
    body, headers = signed_standard(event_id)
    answer = stack.invoke_http("GenericIngestFunction", "POST", "http://127.0.0.1:3000/webhooks/standard/acme",
                               body, headers)  # fmt: skip
    assert answer.status == 200, answer
    return f"standard:acme:{event_id}"


def received(stack: Stack) -> list[dict[str, Any]]:
    """The deliveries the receiver took (verified, not failed by a behaviour): {"id", "body"}."""
    return list(stack.fakes.state["forward_received"])


def forwards(db: Any) -> list[dict[str, Any]]:
    cur = db.execute("SELECT id, idempotency_key, status::text AS status, policy::text AS policy, attempts "
                     "FROM send_queue WHERE channel = 'forward' ORDER BY id")  # fmt: skip
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
