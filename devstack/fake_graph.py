"""Fake Microsoft Graph: the client-credentials token endpoint and GET message (subscriptions, delta and
throttling in ``fake_graph_subscriptions``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from devstack import fake_graph_subscriptions

if TYPE_CHECKING:
    from devstack.fakes import FakeProviders, FakeRequest, Reply


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
        fakes.record("graph.token", request.form().get("client_id", ""), request)
        if fakes.behave("graph.token"):
            return 401, {"error": "invalid_client"}
        return 200, {"token_type": "Bearer", "expires_in": 3599, "access_token": "fake-graph-token"}

    @fakes.route("GET", r"/graph/v1\.0/users/(?P<user>[^/]+)/messages/(?P<mid>[^/]+)")
    def get_message(request: FakeRequest) -> Reply:
        # Graph decodes the path: the worker quotes every id (an address's '@' as %40).
        mid = unquote(request.match.group("mid"))
        fakes.record("graph.get_message", mid, request)
        if request.headers.get("authorization") != "Bearer fake-graph-token":
            return 401, {"error": {"code": "InvalidAuthenticationToken"}}
        throttled = fake_graph_subscriptions.throttle(fakes)
        if throttled:
            return throttled
        failing = fakes.behave("graph.get_message")
        if failing:
            return failing.fail_status, {"error": {"code": "ServiceUnavailable"}}
        message = messages.get((unquote(request.match.group("user")).lower(), mid))
        if message is None:
            return 404, {"error": {"code": "ErrorItemNotFound", "message": "The specified object was not found."}}
        return 200, message

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
