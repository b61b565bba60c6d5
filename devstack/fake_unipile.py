"""Fake Unipile: send into a chat, start a chat, and list a chat's messages (for reconciliation).

Every send is recorded as kind ``unipile.send`` with key ``"{chat_id}:{text}"``; a listing as
``unipile.list``. ``fakes.behave("unipile.send")`` applies: ``delay``, ``fail_times`` with
``fail_status`` (429 answers with ``Retry-After`` and a LinkedIn-warning body; any other status
rejects the message: it is not stored), and ``hang`` (the message IS stored, the answer comes
too late: the client's timeout sees an unknown outcome). ``POST /_fake/state
{"provider": "unipile", "latency": [3, 5]}`` adds a random latency to every send.

What Unipile checks is checked first, and a refused call is recorded as refused, never stored:
the ``X-API-KEY`` (``fakes.credentials["UNIPILE_API_KEY"]``; else 401), a ``multipart/form-data``
body on both sends (``text``; ``account_id`` and ``attendees_ids`` to start a chat; else 400),
and the listing's ``limit`` (1-250). The listing is a chat's messages newest first, ours
(``is_sender: 1``) and the other side's (``is_sender: 0``; ``receive()`` or ``POST /_fake/state
{"provider": "unipile", "inbound": {"chat_id", "texts"}}`` adds them), ``limit`` per page with a
``cursor`` to the next, and ``before``/``after`` filters, as the real API lists them. The chats of an
account with one person (``GET /chat_attendees/{id}/chats``, kind ``unipile.list_chats``) list the
chat a first message started.
"""

from __future__ import annotations

import base64
import hmac
import random
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.fakes import FakeProviders, FakeRequest, Reply

API_KEY = "unipile-api-key-test"  # tests/harness.py TEST_SECRETS["UNIPILE_API_KEY"]
SEND = "unipile.send"
LIST = "unipile.list"
LIST_CHATS = "unipile.list_chats"
DEFAULT_LIMIT = 100  # the fake's page size when the client names none
OTHER_SIDE = "attendee_other"


def _stamp(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _error(status: int, kind: str, detail: str) -> dict[str, Any]:
    return {"status": status, "type": f"errors/{kind}", "title": kind.replace("_", " "), "detail": detail}


def _refusal(fakes: FakeProviders, request: FakeRequest, kind: str, key: str, *required: str) -> Reply | None:
    """Unipile's refusals, checked before anything is stored: the API key, then the body."""
    if not hmac.compare_digest(
        request.headers.get("x-api-key", "").encode(), fakes.credentials["UNIPILE_API_KEY"].encode()
    ):
        return fakes.refuse(kind, key, request, 401, "api key", _error(401, "missing_credentials", "bad X-API-KEY"))
    if request.method == "POST":
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            detail = "the body must be multipart/form-data"
            return fakes.refuse(kind, key, request, 400, detail, _error(400, "invalid_parameters", detail))
        form = request.form()
        missing = [name for name in required if not form.get(name)]
        if missing:
            detail = f"missing {', '.join(missing)}"
            return fakes.refuse(kind, key, request, 400, detail, _error(400, "invalid_parameters", detail))
    return None


def _insert(held: list[dict[str, Any]], message: dict[str, Any], *, dated: bool) -> None:
    held.append(message)
    if dated:  # a message dated in the past (a test's setup): keep the chat in time order
        held.sort(key=lambda m: m["timestamp"])


def _failure(status: int) -> Reply:
    """A behaviour's failure: 429 is a LinkedIn warning with a Retry-After; any other status refuses the message."""
    if status == 429:
        body = {"status": 429, "type": "errors/too_many_requests", "title": "LinkedIn warning: slow down"}
        return 429, body, {"Retry-After": "1"}
    return status, {"status": status, "type": "errors/provider_error"}


def _page(held: list[dict[str, Any]], arg: dict[str, str]) -> dict[str, Any]:
    """One page of a chat's messages, newest first; the cursor is the position after the page's last item.

    Raises ValueError on a bad ``limit`` (1-250), date or cursor, as Unipile answers 400.
    """
    limit = int(arg.get("limit") or DEFAULT_LIMIT)
    if not 1 <= limit <= 250:
        raise ValueError("limit must be between 1 and 250")
    before = _when(arg["before"]) if arg.get("before") else None
    after = _when(arg["after"]) if arg.get("after") else None
    start = int(base64.urlsafe_b64decode(arg["cursor"]).decode()) if arg.get("cursor") else len(held)
    older = [
        (i, m)
        for i, m in enumerate(held[:start])
        if (before is None or _when(m["timestamp"]) < before) and (after is None or _when(m["timestamp"]) > after)
    ]
    page = list(reversed(older))[:limit]
    cursor = base64.urlsafe_b64encode(str(page[-1][0]).encode()).decode() if len(older) > limit else None
    return {"object": "MessageList", "items": [dict(m) for _, m in page], "cursor": cursor}


def _chat_list(chats: dict[str, list[dict[str, Any]]], account: str, attendee: str) -> dict[str, Any]:
    chat_id = f"chat_{account}_{attendee}"  # the id start_chat gives the chat a first message starts
    item = {"object": "Chat", "id": chat_id, "account_id": account, "attendee_provider_id": attendee}
    return {"object": "ChatList", "items": [item] if chats.get(chat_id) else [], "cursor": None}


def _install_chat_listing(fakes: FakeProviders, chats: dict[str, list[dict[str, Any]]], lock: threading.Lock) -> None:
    @fakes.route("GET", r"/unipile/api/v1/chat_attendees/(?P<attendee>[^/]+)/chats")
    def chats_with(request: FakeRequest) -> Reply:
        """The account's chats with one person (``account_id`` required here): the chat a first message started."""
        attendee = request.match.group("attendee")
        refused = _refusal(fakes, request, LIST_CHATS, attendee)
        if refused:
            return refused
        fakes.record(LIST_CHATS, attendee, request)
        with lock:
            return 200, _chat_list(chats, request.query.get("account_id", [""])[0], attendee)


def install(fakes: FakeProviders) -> None:
    chats: dict[str, list[dict[str, Any]]] = {}
    config: dict[str, Any] = {}
    lock = threading.Lock()
    fakes.state["unipile_chats"] = chats
    fakes.state["unipile_config"] = config

    def store(chat_id: str, text: str, *, is_sender: int = 1, at: datetime | None = None) -> dict[str, Any]:
        message = {
            "object": "Message",
            "id": f"msg_{uuid.uuid4().hex[:16]}",
            "chat_id": chat_id,
            "sender_id": "me" if is_sender else OTHER_SIDE,
            "text": text,
            "is_sender": is_sender,
            "timestamp": _stamp(at),
        }
        with lock:
            _insert(chats.setdefault(chat_id, []), message, dated=at is not None)
        return message

    def setup(spec: dict[str, Any]) -> dict[str, Any]:
        if "latency" in spec:
            config["latency"] = tuple(float(x) for x in spec["latency"])
        inbound = spec.get("inbound")
        if inbound:
            for text in inbound["texts"]:
                store(str(inbound["chat_id"]), str(text), is_sender=0)
        return {"config": {k: list(v) for k, v in config.items()}}

    fakes.state["setup:unipile"] = setup
    fakes.state["unipile_store"] = store

    def unstore(chat_id: str, message: dict[str, Any]) -> None:
        with lock:
            chats.get(chat_id, []).remove(message)

    def send(request: FakeRequest, chat_id: str, text: str, *required: str) -> Reply:
        refused = _refusal(fakes, request, SEND, f"{chat_id}:{text}", "text", *required)
        if refused:
            return refused
        call = fakes.record(SEND, f"{chat_id}:{text}", request)
        latency = config.get("latency")
        if latency:
            time.sleep(random.uniform(*latency))  # noqa: S311 - a simulated latency, not a secret
        message = store(chat_id, text)  # accepted before the answer: a hang loses only the answer
        failing = fakes.behave(SEND)
        if failing:
            fakes.failed(call)
            unstore(chat_id, message)
            return _failure(failing.fail_status)
        if request.path.endswith("/chats"):
            return 201, {"object": "ChatStarted", "chat_id": chat_id, "message_id": message["id"]}
        return 201, {"object": "MessageSent", "message_id": message["id"]}

    @fakes.route("POST", r"/unipile/api/v1/chats/(?P<chat>[^/]+)/messages")
    def send_message(request: FakeRequest) -> Reply:
        return send(request, request.match.group("chat"), request.form().get("text", ""))

    @fakes.route("POST", r"/unipile/api/v1/chats")
    def start_chat(request: FakeRequest) -> Reply:
        form = request.form()
        chat_id = f"chat_{form.get('account_id', '')}_{form.get('attendees_ids', '')}"
        return send(request, chat_id, form.get("text", ""), "account_id", "attendees_ids")

    _install_chat_listing(fakes, chats, lock)

    @fakes.route("GET", r"/unipile/api/v1/chats/(?P<chat>[^/]+)/messages")
    def list_messages(request: FakeRequest) -> Reply:
        chat_id = request.match.group("chat")
        refused = _refusal(fakes, request, LIST, chat_id)
        if refused:
            return refused
        try:
            with lock:
                page = _page(chats.get(chat_id, []), {k: v[0] for k, v in request.query.items()})
        except ValueError as exc:
            return fakes.refuse(LIST, chat_id, request, 400, str(exc), _error(400, "invalid_parameters", str(exc)))
        call = fakes.record(LIST, chat_id, request)
        failing = fakes.behave(LIST)
        if failing:
            fakes.failed(call)
            return failing.fail_status, {"status": failing.fail_status, "type": "errors/provider_error"}
        return 200, page


def delivered(fakes: FakeProviders, chat_id: str, text: str | None = None) -> int:
    """How many messages (of ``text``) we sent into the chat: the effect, as a recipient would see it."""
    chats: dict[str, list[dict[str, Any]]] = fakes.state["unipile_chats"]
    return sum(1 for m in chats.get(chat_id, []) if m["is_sender"] and (text is None or m["text"] == text))


def receive(fakes: FakeProviders, chat_id: str, text: str, at: datetime | None = None) -> None:
    """A message from the other side of the chat (``is_sender: 0``), listed with ours."""
    fakes.state["unipile_store"](chat_id, text, is_sender=0, at=at)
