"""Microsoft Graph change notifications (mail).

Handshake: ``?validationToken=`` -> 200 text/plain with the decoded token.
Auth: every item echoes ``clientState``; it must equal one of the accepted ones (two during a rotation),
each compared in constant time.
Dedup: (subscriptionId, changeType, resourceData.id, etag) per item; Graph retries
for up to 4 hours, the window defaults to 24 hours.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from exactly_once.core.errors import BadRequestError, UnauthorizedError
from exactly_once.core.events import InboundEvent, unreadable_event
from exactly_once.core.secrets import get_secret
from exactly_once.core.settings import env_int
from exactly_once.ingest.adapters.base import Split, WebhookAdapter, secrets_equal
from exactly_once.ingest.apigw import Request, text_response

CHANGE_TYPES = frozenset({"created", "updated", "deleted"})
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})
_MAILBOX = re.compile(r"^/?users/([^/]+)/", re.IGNORECASE)
_MAX_TOKEN = 1024
#: Basic notifications are under 1 KB an item; the clientState that authenticates them is inside the body,
#: so the body is refused by size before it is parsed (issue 16). GRAPH_MAX_BODY_BYTES changes it.
MAX_BODY_BYTES = 256 * 1024


def mailbox_of(item: dict[str, Any]) -> str | None:
    """The user part of ``Users/{id}/Messages/{id}``: the FIFO group, so one mailbox stays in order."""
    match = _MAILBOX.match(str(item.get("resource") or ""))
    return match.group(1).lower() if match else None


def item_key(item: dict[str, Any]) -> str:
    data = item.get("resourceData") or {}
    parts = [item["subscriptionId"], item["changeType"], data["id"], data.get("@odata.etag") or ""]
    if any(isinstance(p, (dict, list)) for p in parts):
        # str() of an object depends on its key order: the same item re-serialised would get another key.
        raise TypeError("notification key parts must be scalars")
    return "graph:" + "|".join(str(p) for p in parts)


class GraphAdapter(WebhookAdapter):
    provider = "graph"
    accepted_status = 202
    content_types = ("application/json", "text/plain", "")  # Graph sends application/json; tolerate none
    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, client_state: str | tuple[str, ...], dedup_window_seconds: int = 24 * 3600) -> None:
        states = (client_state,) if isinstance(client_state, str) else client_state
        self._client_states = tuple(s for s in states if s)
        self.dedup_window_seconds = dedup_window_seconds

    @classmethod
    def from_env(cls) -> GraphAdapter:
        """``GRAPH_CLIENT_STATE``, and during a rotation ``GRAPH_CLIENT_STATE_PREVIOUS`` too (README, Graph setup)."""
        states = (get_secret("GRAPH_CLIENT_STATE"), get_secret("GRAPH_CLIENT_STATE_PREVIOUS", required=False))
        adapter = cls(states, env_int("GRAPH_DEDUP_WINDOW_SECONDS", 24 * 3600))
        adapter.max_body_bytes = env_int("GRAPH_MAX_BODY_BYTES", MAX_BODY_BYTES)
        return adapter

    def handshake(self, request: Request) -> dict[str, Any] | None:
        if "validationToken" not in request.query:
            return None
        token = request.query["validationToken"]  # API Gateway has URL-decoded it already
        if not token or len(token) > _MAX_TOKEN:
            raise BadRequestError("validationToken must be 1 to 1024 characters", code="invalid_token")
        return text_response(200, token)

    def authenticate(self, request: Request) -> None:
        """Basic Graph notifications are unsigned: clientState is checked per item in ``split``."""

    def split(self, request: Request) -> Split:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise BadRequestError("body must be an object with a 'value' array", code="missing_value")
        split = Split()
        for item in body["value"]:
            if not isinstance(item, dict) or not self._client_state_matches(item.get("clientState")):
                split.rejected += 1
                continue
            split.events.append(self._event(item))
        if split.rejected and not split.events:
            raise UnauthorizedError("clientState does not match for any item", code="invalid_client_state")
        return split

    def _client_state_matches(self, value: Any) -> bool:
        """Compared with every accepted clientState, each in constant time, all of them every time."""
        given = _str_or_none(value)
        return sum(secrets_equal(given, state) for state in self._client_states) > 0

    def _event(self, item: dict[str, Any]) -> InboundEvent:
        sub = str(item.get("subscriptionId") or "")
        lifecycle = item.get("lifecycleEvent")
        if lifecycle is not None:
            # Lifecycle items carry no resource: keyed by what changes between two of them.
            key = f"graph:lifecycle:{sub}|{lifecycle}|{item.get('subscriptionExpirationDateTime') or ''}"
            return InboundEvent("graph", key, f"graph:subscription:{sub}", f"lifecycle:{lifecycle}", item)
        try:
            if item.get("changeType") not in CHANGE_TYPES:
                raise KeyError("changeType")  # only Graph's: a kind of our own (a resync's) never comes from outside
            key = item_key(item)
        except (KeyError, TypeError, AttributeError):
            digest = hashlib.sha256(json.dumps(item, sort_keys=True).encode()).hexdigest()
            reason = "notification lacks subscriptionId, resourceData.id or a changeType of created|updated|deleted"
            raw = json.dumps(item, ensure_ascii=False)
            return unreadable_event(
                "graph", raw, reason, key=f"graph:quarantine:{digest}", group=f"graph:subscription:{sub}"
            )
        group = f"graph:mailbox:{mailbox_of(item) or sub}"
        return InboundEvent("graph", key, group, str(item["changeType"]), item)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def rebuild(item: dict[str, Any]) -> InboundEvent:
    """An operator's corrected notification item, split as ingest would have split it (``replay --payload``).

    Its clientState was checked when it arrived (the quarantine row exists because it passed).
    Raises ValueError when the item is not one notification.
    """
    raw = json.dumps({"value": [item]}).encode()
    client_state = item.get("clientState") if isinstance(item.get("clientState"), str) else ""
    split = GraphAdapter(str(client_state)).split(Request("POST", "/webhooks/graph", raw, {}, {}))
    if len(split.events) != 1:
        raise ValueError("the corrected payload is not one Graph notification item")
    return split.events[0]
