"""Fake Microsoft Graph: the client-credentials token endpoint, GET message and PATCH isRead (subscriptions,
delta and throttling in ``fake_graph_subscriptions``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from devstack import fake_graph_subscriptions

if TYPE_CHECKING:
    from devstack.fakes import FakeProviders, FakeRequest, Reply

ACCESS_TOKEN = "fake-graph-token"  # noqa: S105 - the fake issues it; every API call must carry it
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
# Graph's default message properties leave internetMessageHeaders out: only $select returns them.
_UNSELECTED = frozenset({"internetMessageHeaders"})
NOT_FOUND = {"error": {"code": "ErrorItemNotFound", "message": "The specified object was not found."}}


def install(fakes: FakeProviders) -> None:
    messages: dict[tuple[str, str], dict[str, Any]] = {}
    fakes.state["graph_messages"] = messages

    def setup(spec: dict[str, Any]) -> dict[str, Any]:
        """POST /_fake/state {"provider": "graph", "user": .., "message": {..graph message..}}"""
        messages[(spec["user"].lower(), spec["message"]["id"])] = spec["message"]
        return {"stored": spec["message"]["id"]}

    fakes.state["setup:graph"] = setup

    @fakes.route("POST", r"/graph/token")
    def token(request: FakeRequest) -> Reply:
        form = request.form()
        client_id = form.get("client_id", "")
        refusal = token_refusal(fakes, form)
        if refusal:
            status, error = refusal
            return fakes.refuse("graph.token", client_id, request, status, error, {"error": error})
        call = fakes.record("graph.token", client_id, request)
        if fakes.behave("graph.token"):
            fakes.failed(call)
            return 401, {"error": "invalid_client"}
        return 200, {"token_type": "Bearer", "expires_in": 3599, "access_token": ACCESS_TOKEN}

    def addressed(request: FakeRequest, kind: str) -> tuple[str, tuple[str, str], Reply | None]:
        """The message id, its (user, id) key and a 401 unless the bearer token is the issued one.
        Graph decodes the path: the worker quotes every id (an address's '@' as %40)."""
        mid = unquote(request.match.group("mid"))
        return mid, (unquote(request.match.group("user")).lower(), mid), unauthorized(fakes, request, kind, mid)

    @fakes.route("GET", r"/graph/v1\.0/users/(?P<user>[^/]+)/messages/(?P<mid>[^/]+)")
    def get_message(request: FakeRequest) -> Reply:
        mid, key, refused = addressed(request, "graph.get_message")
        if refused:
            return refused
        call = fakes.record("graph.get_message", mid, request)
        throttled = fake_graph_subscriptions.throttle(fakes) or fakes.behave("graph.get_message")
        if throttled:
            fakes.failed(call)
            if isinstance(throttled, tuple):
                return throttled
            status = throttled.fail_status
            code = "TooManyRequests" if status == 429 else "ServiceUnavailable"
            # Graph's throttling 429 carries a Retry-After (seconds), which the client honours.
            return status, {"error": {"code": code}}, {"Retry-After": "1"} if status == 429 else {}
        message = messages.get(key)
        if message is None:
            return 404, NOT_FOUND
        return 200, selected(message, request.query.get("$select", [""])[0])

    @fakes.route("PATCH", r"/graph/v1\.0/users/(?P<user>[^/]+)/messages/(?P<mid>[^/]+)")
    def mark_read(request: FakeRequest) -> Reply:
        # Mark-as-read (flows/graph/mark_read.py): the only update the bundle makes, {"isRead": true}.
        mid, key, refused = addressed(request, "graph.mark_read")
        if refused:
            return refused
        body = request.json()
        if body != {"isRead": True}:
            return fakes.refuse("graph.mark_read", mid, request, 400, "body", {"error": {"code": "BadRequest"}})
        message = messages.get(key)
        if message is None:
            return 404, NOT_FOUND
        call = fakes.record("graph.mark_read", mid, request)
        message["isRead"] = True  # a hang (behave sleeps past the client's timeout): marked, the answer late
        failing = fakes.behave("graph.mark_read")
        if failing:
            fakes.failed(call)
            message["isRead"] = False
            if failing.fail_status == 429:
                return 429, {"error": {"code": "TooManyRequests"}}, {"Retry-After": "1"}
            return failing.fail_status, {"error": {"code": "ServiceUnavailable"}}
        return 200, selected(message, "")

    fake_graph_subscriptions.install(fakes, messages)


def graph_message(
    message_id: str,
    internet_message_id: str,
    *,
    conversation_id: str = "conv-1",
    subject: str = "Printer on fire",
    sender: str = "alice@example.com",
    in_reply_to: str | None = None,
) -> dict[str, Any]:
    """A message in the shape Graph returns for the worker's $select."""
    headers = [{"name": "Message-ID", "value": internet_message_id}]
    if in_reply_to:
        headers += [{"name": "In-Reply-To", "value": in_reply_to}, {"name": "References", "value": in_reply_to}]
    return {
        "id": message_id,
        "internetMessageId": internet_message_id,
        "conversationId": conversation_id,
        "subject": subject,
        "from": {"emailAddress": {"address": sender, "name": sender.split("@", maxsplit=1)[0]}},
        "bodyPreview": "Hello helpdesk",
        "receivedDateTime": "2026-11-22T08:00:00Z",
        "internetMessageHeaders": headers,
    }


def token_refusal(fakes: FakeProviders, form: dict[str, str]) -> tuple[int, str] | None:
    """Why Entra ID would refuse a client-credentials token request (status, OAuth error), or None."""
    if form.get("grant_type") != "client_credentials":
        return 400, "unsupported_grant_type"
    expected = (fakes.credentials.get("GRAPH_CLIENT_ID"), fakes.credentials.get("GRAPH_CLIENT_SECRET"))
    if (form.get("client_id"), form.get("client_secret")) != expected:
        return 401, "invalid_client"
    if form.get("scope") != GRAPH_SCOPE:
        return 400, "invalid_scope"
    return None


def unauthorized(fakes: FakeProviders, request: FakeRequest, kind: str, key: str) -> Reply | None:
    """A 401 recorded as refused (never an effect) unless the call carries the issued bearer token."""
    if request.headers.get("authorization") == f"Bearer {ACCESS_TOKEN}":
        return None
    body = {"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty or invalid."}}
    return fakes.refuse(kind, key, request, 401, "bearer token", body)


def selected(resource: dict[str, Any], select: str) -> dict[str, Any]:
    """What Graph answers for ``$select``: the fields named and ``id`` (always); without one, the defaults."""
    if not select:
        return {k: v for k, v in resource.items() if k not in _UNSELECTED}
    fields = {f.strip() for f in select.split(",")} | {"id"}
    return {k: v for k, v in resource.items() if k in fields}
