"""Fake Unipile: send into a chat, start a chat, and list a chat's messages (for reconciliation).

Every send is recorded as kind ``unipile.send`` with key ``"{chat_id}:{text}"``; a listing as
``unipile.list``. ``fakes.behave("unipile.send")`` applies: ``delay``, ``fail_times`` with
``fail_status`` (429 answers with ``Retry-After`` and a LinkedIn-warning body; any other status
rejects the message: it is not stored), and ``hang`` (the message IS stored, the answer comes
too late: the client's timeout sees an unknown outcome). ``POST /_fake/state
{"provider": "unipile", "latency": [3, 5]}`` adds a random latency to every send.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.fakes import FakeProviders, FakeRequest, Reply

API_KEY = "unipile-api-key-test"  # tests/harness.py TEST_SECRETS["UNIPILE_API_KEY"]


def install(fakes: FakeProviders) -> None:
    chats: dict[str, list[dict[str, Any]]] = {}
    config: dict[str, Any] = {}
    lock = threading.Lock()
    fakes.state["unipile_chats"] = chats
    fakes.state["unipile_config"] = config

    def setup(spec: dict[str, Any]) -> dict[str, Any]:
        if "latency" in spec:
            config["latency"] = tuple(float(x) for x in spec["latency"])
        return {"config": {k: list(v) for k, v in config.items()}}

    fakes.state["setup:unipile"] = setup

    def store(chat_id: str, text: str) -> dict[str, Any]:
        message = {
            "object": "Message",
            "id": f"msg_{uuid.uuid4().hex[:16]}",
            "chat_id": chat_id,
            "text": text,
            "is_sender": 1,
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        with lock:
            chats.setdefault(chat_id, []).append(message)
        return message

    def unstore(chat_id: str, message: dict[str, Any]) -> None:
        with lock:
            chats.get(chat_id, []).remove(message)

    def send(request: FakeRequest, chat_id: str, text: str) -> Reply:
        fakes.record("unipile.send", f"{chat_id}:{text}", request)
        if request.headers.get("x-api-key") != API_KEY:
            return 401, {"status": 401, "type": "errors/invalid_credentials"}
        if not text:
            return 400, {"status": 400, "type": "errors/invalid_parameters", "detail": "text is required"}
        latency = config.get("latency")
        if latency:
            time.sleep(random.uniform(*latency))  # noqa: S311 - a simulated latency, not a secret
        message = store(chat_id, text)  # accepted before the answer: a hang loses only the answer
        failing = fakes.behave("unipile.send")
        if failing:
            unstore(chat_id, message)
            if failing.fail_status == 429:
                return (
                    429,
                    {"status": 429, "type": "errors/too_many_requests", "title": "LinkedIn warning: slow down"},
                    {"Retry-After": "1"},
                )
            return failing.fail_status, {"status": failing.fail_status, "type": "errors/provider_error"}
        return 201, {"object": "MessageSent", "message_id": message["id"], "chat_id": chat_id}

    @fakes.route("POST", r"/unipile/api/v1/chats/(?P<chat>[^/]+)/messages")
    def send_message(request: FakeRequest) -> Reply:
        return send(request, request.match.group("chat"), request.form().get("text", ""))

    @fakes.route("POST", r"/unipile/api/v1/chats")
    def start_chat(request: FakeRequest) -> Reply:
        form = request.form()
        chat_id = f"chat_{form.get('account_id', '')}_{form.get('attendees_ids', '')}"
        return send(request, chat_id, form.get("text", ""))

    @fakes.route("GET", r"/unipile/api/v1/chats/(?P<chat>[^/]+)/messages")
    def list_messages(request: FakeRequest) -> Reply:
        chat_id = request.match.group("chat")
        fakes.record("unipile.list", chat_id, request)
        if request.headers.get("x-api-key") != API_KEY:
            return 401, {"status": 401, "type": "errors/invalid_credentials"}
        failing = fakes.behave("unipile.list")
        if failing:
            return failing.fail_status, {"status": failing.fail_status, "type": "errors/provider_error"}
        limit = int((request.query.get("limit") or ["50"])[0])
        with lock:
            items = list(reversed(chats.get(chat_id, [])))[:limit]  # newest first, as Unipile lists
        return 200, {"object": "MessageList", "items": items, "cursor": None}


def delivered(fakes: FakeProviders, chat_id: str, text: str | None = None) -> int:
    """How many messages (of ``text``) the chat holds: the effect, as a recipient would see it."""
    chats: dict[str, list[dict[str, Any]]] = fakes.state["unipile_chats"]
    return sum(1 for m in chats.get(chat_id, []) if text is None or m["text"] == text)
