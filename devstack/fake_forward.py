"""A fake downstream receiver of forwarded events: ``POST /forward/{name}``, Standard Webhooks signed.

It checks what a receiver following the Standard Webhooks specification checks before it takes a
delivery: the three headers, a timestamp within 5 minutes, and a ``v1`` signature over
``id.timestamp.body`` with ``fakes.credentials["FORWARD_SIGNING_SECRET"]`` (``whsec_`` and base64);
else 401, recorded as refused. An accepted delivery is recorded as kind ``forward.receive`` with the
``webhook-id`` as its key, so ``fakes.count("forward.receive", key)`` counts the attempts of one event
and ``fakes.delivered`` those that took effect. ``fakes.state["forward_received"]`` keeps each taken
delivery's id and parsed body. ``fakes.behave("forward.receive")``: ``fail_times`` with ``fail_status``
(429 carries ``Retry-After: 1``), ``hang`` (taken, the answer too late: an unknown outcome).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.fakes import FakeProviders, FakeRequest, Reply

KIND = "forward.receive"
TOLERANCE_SECONDS = 300


def why_refused(headers: dict[str, str], body: bytes, secret: str, now: float) -> str | None:
    """Why a Standard Webhooks receiver would refuse this delivery, or None (it verifies)."""
    msg_id, stamp, signatures = (headers.get(h, "") for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures):
        return "missing webhook headers"
    if not stamp.isascii() or not stamp.isdigit() or abs(now - int(stamp)) > TOLERANCE_SECONDS:
        return "timestamp outside the tolerance"
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"))
    except (binascii.Error, ValueError):
        return "bad secret"
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
    for item in signatures.split():
        version, _, value = item.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return None
    return "no matching signature"


def install(fakes: FakeProviders) -> None:
    received: list[dict[str, Any]] = []
    lock = threading.Lock()
    fakes.state["forward_received"] = received

    @fakes.route("POST", r"/forward/(?P<name>[^/]+)")
    def receive(request: FakeRequest) -> Reply:
        msg_id = request.headers.get("webhook-id", "")
        secret = fakes.credentials.get("FORWARD_SIGNING_SECRET", "")
        problem = why_refused(request.headers, request.body, secret, time.time())
        if problem:
            return fakes.refuse(KIND, msg_id, request, 401, problem, {"error": problem})
        call = fakes.record(KIND, msg_id, request)
        failing = fakes.behave(KIND)
        if failing:
            fakes.failed(call)
            if failing.fail_status == 429:
                return 429, {"error": "slow down"}, {"retry-after": "1"}
            return failing.fail_status, {"error": "receiver unavailable"}
        with lock:
            received.append({"id": msg_id, "body": json.loads(request.body)})
        return 204, b""
