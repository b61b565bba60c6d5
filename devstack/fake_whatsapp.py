"""Fake WhatsApp Cloud API send: ``POST /whatsapp/{version}/{phone_number_id}/messages``.

Every send is recorded as kind ``whatsapp.send`` with key ``"{to}:{text}"``; the answer carries
``messages[0].id`` (a wamid). ``fakes.behave("whatsapp.send")``: ``delay``; ``fail_times`` with
``fail_status`` (429 -> error code 130429, rate limit hit; others -> an error, not delivered);
``hang`` (delivered, the answer comes too late). There is no listing: WhatsApp has none.
"""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.fakes import FakeProviders, FakeRequest, Reply

ACCESS_TOKEN = "whatsapp-access-token-test"  # noqa: S105 - the test secret; tests/harness.py TEST_SECRETS["WHATSAPP_ACCESS_TOKEN"]


def install(fakes: FakeProviders) -> None:
    sent: list[dict[str, Any]] = []
    lock = threading.Lock()
    fakes.state["whatsapp_sent"] = sent

    @fakes.route("POST", r"/whatsapp/(?P<version>v[0-9.]+)/(?P<phone>[^/]+)/messages")
    def send(request: FakeRequest) -> Reply:
        body = request.json() or {}
        to = str(body.get("to") or "")
        text = str((body.get("text") or {}).get("body") or body.get("type") or "")
        fakes.record("whatsapp.send", f"{to}:{text}", request)
        if request.headers.get("authorization") != f"Bearer {ACCESS_TOKEN}":
            return 401, {"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}}
        if body.get("messaging_product") != "whatsapp" or not to:
            return 400, {"error": {"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100}}
        wamid = f"wamid.{uuid.uuid4().hex}"
        message = {"id": wamid, "phone_number_id": request.match.group("phone"), "to": to, "text": text}
        with lock:
            sent.append(message)
        failing = fakes.behave("whatsapp.send")
        if failing:
            with lock:
                sent.remove(message)
            if failing.fail_status == 429:
                return 429, {"error": {"message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429}}
            return failing.fail_status, {"error": {"message": "Service temporarily unavailable", "code": 2}}
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": wamid}],
        }


def delivered(fakes: FakeProviders, to: str, text: str | None = None) -> int:
    sent: list[dict[str, Any]] = fakes.state["whatsapp_sent"]
    return sum(1 for m in sent if m["to"] == to and (text is None or m["text"] == text))
