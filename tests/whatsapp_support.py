"""WhatsApp Cloud API webhook bodies in Meta's documented shapes, signed as Meta signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

from tests.harness import TEST_SECRETS, HttpAnswer, Stack

FUNCTION = "WhatsAppIngestFunction"
URL = "http://127.0.0.1:3000/webhooks/whatsapp"
WABA = "102290129340398"
PHONE = "106540352242922"
DISPLAY = "15550783881"
CUSTOMER = "16505551234"
# Meta stamps a message when the customer sends it: now, so a reply is inside the 24-hour window (sends/window.py).
TS = str(int(time.time()))


def text_message(wamid: str, body: str, sender: str = CUSTOMER, ts: str = TS) -> dict[str, Any]:
    return {"from": sender, "id": wamid, "timestamp": ts, "type": "text", "text": {"body": body}}


def message_of_type(wamid: str, kind: str, part: dict[str, Any] | None = None, sender: str = CUSTOMER):
    message: dict[str, Any] = {"from": sender, "id": wamid, "timestamp": TS, "type": kind}
    if part is not None:
        message[kind] = part
    return message


def status(wamid: str, state: str, recipient: str = CUSTOMER, ts: str = TS, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"id": wamid, "status": state, "timestamp": ts, "recipient_id": recipient}
    if state in ("sent", "delivered"):
        item["conversation"] = {"id": "CONVERSATION_ID", "origin": {"type": "service"}}
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
    item.update(extra)
    return item


def failed(wamid: str, code: int = 131047, recipient: str = CUSTOMER) -> dict[str, Any]:
    errors = [
        {
            "code": code,
            "title": "Re-engagement message",
            "message": "Re-engagement message",
            "error_data": {"details": "Message failed to send because more than 24 hours have passed"},
        }
    ]
    return status(wamid, "failed", recipient, errors=errors)


def contact(wa_id: str = CUSTOMER, name: str = "Sheena Nelson") -> dict[str, Any]:
    return {"profile": {"name": name}, "wa_id": wa_id}


def change(
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
    phone: str = PHONE,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY, "phone_number_id": phone},
    }
    if messages is not None:
        senders = {m["from"] for m in messages if "from" in m}
        value["contacts"] = contacts if contacts is not None else [contact(s) for s in sorted(senders)]
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {"value": value, "field": "messages"}


def entry(*changes: dict[str, Any], waba: str = WABA) -> dict[str, Any]:
    return {"id": waba, "changes": list(changes)}


def envelope(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": list(entries)}


def meta_bytes(payload: dict[str, Any]) -> bytes:
    """JSON as Meta posts it: compact, non-ASCII escaped as \\uXXXX (the bytes it signs)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign(raw: bytes, secret: str | None = None) -> str:
    key = (secret or TEST_SECRETS["WHATSAPP_APP_SECRET"]).encode()
    return "sha256=" + hmac.new(key, raw, hashlib.sha256).hexdigest()


def headers_for(raw: bytes, signature: str | None = "auto") -> dict[str, str]:
    headers = {"content-type": "application/json", "user-agent": "facebookexternalua"}
    if signature == "auto":
        headers["x-hub-signature-256"] = sign(raw)
    elif signature is not None:
        headers["x-hub-signature-256"] = signature
    return headers


def post(stack: Stack, payload: dict[str, Any] | bytes, signature: str | None = "auto", **kw: Any) -> HttpAnswer:
    raw = payload if isinstance(payload, bytes) else meta_bytes(payload)
    headers = kw.pop("headers", None) or headers_for(raw, signature)
    return stack.invoke_http(FUNCTION, "POST", URL, raw, headers)


def verify(stack: Stack, **query: str) -> HttpAnswer:
    return stack.invoke_http(FUNCTION, "GET", f"{URL}?{urlencode(query)}")


def one_text(wamid: str, body: str = "test", sender: str = CUSTOMER) -> dict[str, Any]:
    """A whole webhook body with one text message."""
    return envelope(entry(change(messages=[text_message(wamid, body, sender)])))
