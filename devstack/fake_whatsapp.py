"""Fake WhatsApp Cloud API send: ``POST /whatsapp/{version}/{phone_number_id}/messages``.

Every send is recorded as kind ``whatsapp.send`` with key ``"{to}:{text}"``; the answer carries
``messages[0].id`` (a wamid). Before that the fake checks what the Cloud API checks: the
``Authorization: Bearer`` access token (``fakes.credentials["WHATSAPP_ACCESS_TOKEN"]``; else 401,
code 190) and the body (a JSON object with ``messaging_product: "whatsapp"``, ``to``, a known
``type``, defaulting to text, and that type's object: ``text.body``, ``template.name`` and
``template.language.code``; else 400, code 100). A refused send is recorded as refused, never sent.
``fakes.behave("whatsapp.send")``: ``delay``; ``fail_times`` with ``fail_status`` (429 -> error
code 130429, rate limit hit, with no Retry-After: Meta documents none for the Cloud API; others -> an error,
not delivered); ``hang`` (delivered, the answer comes too late). There is no listing: WhatsApp has none.
"""

from __future__ import annotations

import hmac
import threading
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.fakes import FakeProviders, FakeRequest, Reply

ACCESS_TOKEN = "whatsapp-access-token-test"  # noqa: S105 - the test secret; tests/harness.py TEST_SECRETS["WHATSAPP_ACCESS_TOKEN"]
KIND = "whatsapp.send"
# Message types the Cloud API sends (POST /{phone_number_id}/messages, "type").
TYPES = frozenset(
    {
        "text",
        "template",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "location",
        "contacts",
        "interactive",
        "reaction",
    }
)
TEXT_MAX = 4096


def _invalid(message: str) -> dict[str, Any]:
    return {"error": {"message": f"(#100) {message}", "type": "OAuthException", "code": 100}}


def shape_error(body: Any) -> str | None:
    """Why the Cloud API would refuse this send body with (#100), or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if body.get("messaging_product") != "whatsapp":
        return "The parameter messaging_product is required and must be 'whatsapp'."
    if not isinstance(body.get("to"), str) or not body["to"].strip():
        return "The parameter to is required."
    if body.get("recipient_type", "individual") != "individual":
        return "Param recipient_type must be 'individual'."
    kind = body.get("type", "text")
    if kind not in TYPES:
        return f"Param type must be one of {sorted(TYPES)}."
    value = body.get(kind)
    if not isinstance(value, dict):
        return f"The parameter {kind} is required."
    if kind == "text":
        text = value.get("body")
        if not isinstance(text, str) or not text:
            return "The parameter text['body'] is required."
        if len(text) > TEXT_MAX:
            return f"Param text['body'] must be at most {TEXT_MAX} characters long."
    if kind == "template":
        language = value.get("language")
        if not value.get("name") or not isinstance(language, dict) or not language.get("code"):
            return "The parameters template['name'] and template['language']['code'] are required."
    return None


def install(fakes: FakeProviders) -> None:
    sent: list[dict[str, Any]] = []
    lock = threading.Lock()
    fakes.state["whatsapp_sent"] = sent

    @fakes.route("POST", r"/whatsapp/(?P<version>v[0-9.]+)/(?P<phone>[^/]+)/messages")
    def send(request: FakeRequest) -> Reply:
        try:
            body = request.json()
        except ValueError:
            body = None
        fields = body if isinstance(body, dict) else {}
        to = str(fields.get("to") or "")
        content = fields.get("text")
        text = str((content.get("body") if isinstance(content, dict) else None) or fields.get("type") or "")
        key = f"{to}:{text}"
        token = fakes.credentials["WHATSAPP_ACCESS_TOKEN"]
        if not hmac.compare_digest(request.headers.get("authorization", "").encode(), f"Bearer {token}".encode()):
            error = {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}
            return fakes.refuse(KIND, key, request, 401, "access token", {"error": error})
        if not request.headers.get("content-type", "").startswith("application/json"):
            return fakes.refuse(KIND, key, request, 400, "content type", _invalid("The body must be JSON."))
        problem = shape_error(body)
        if problem:
            return fakes.refuse(KIND, key, request, 400, problem, _invalid(problem))
        call = fakes.record(KIND, key, request)
        wamid = f"wamid.{uuid.uuid4().hex}"
        message = {"id": wamid, "phone_number_id": request.match.group("phone"), "to": to, "text": text}
        with lock:
            sent.append(message)
        failing = fakes.behave(KIND)
        if failing:
            fakes.failed(call)
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
