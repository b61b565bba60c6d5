"""The provider flows a storm can drive, discovered from the running stack's routes.

A flow is used when its route is in the template (GET /local/routes) and what it
needs locally exists; otherwise the demo says why it skipped it. Add a provider's
flow here: a route, signed deliveries, the dedup keys its adapter derives, and where
its effect is counted.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from devstack.fake_graph import graph_message
from devstack.queries import q
from devstack.storm import Delivery, Flow, StormClient

GRAPH_MAILBOXES = 8  # FIFO groups: one per mailbox, so several pollers can work at once
GRAPH_SUB = "5a0e5a0e-2dc5-4530-97cd-4e7ae6534c07"
JSON = {"content-type": "application/json"}


class GraphFlow:
    """Graph mail -> ticket. The effect: one ``tickets`` row per internetMessageId.

    Each mail is notified ``copies`` times ("created", identical: stopped at ingest),
    and, when ``updated`` is set, once more as "updated" with a new etag, as Graph does
    for one new mail: a different notification, so it passes ingest and the queue and
    is stopped by Postgres.
    """

    name = "graph"
    supports_naive = True  # devstack/naive.py has its check-then-insert twin

    def __init__(self, client_state: str, updated: bool = True) -> None:
        self.client_state = client_state
        self.updated = updated
        self.run = uuid.uuid4().hex[:10]

    def unavailable(self, routes: set[str]) -> str | None:
        return None if "POST /webhooks/graph" in routes else "no POST /webhooks/graph route in the template"

    def _user(self, i: int) -> str:
        return f"0b1c2d3e-0000-4000-8000-{i % GRAPH_MAILBOXES:012d}"

    def _mid(self, i: int) -> str:
        return f"storm-{self.run}-{i}"

    def _imid(self, i: int) -> str:
        return f"<storm-{self.run}-{i}@demo.local>"

    def prepare(self, client: StormClient, n: int) -> None:
        def one(i: int) -> None:
            message = graph_message(self._mid(i), self._imid(i), conversation_id=f"conv-{self.run}-{i}")
            user = self._user(i)
            client.json("POST", "/fake/_fake/state", {"provider": "graph", "user": user, "message": message})

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(one, range(n)))

    def _item(self, i: int, change: str, etag: str) -> dict[str, Any]:
        resource = f"Users/{self._user(i)}/Messages/{self._mid(i)}"
        return {
            "subscriptionId": GRAPH_SUB,
            "subscriptionExpirationDateTime": "2026-12-01T08:00:00.0000000Z",
            "changeType": change,
            "resource": resource,
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.id": resource,
                "@odata.etag": etag,
                "id": self._mid(i),
            },
            "clientState": self.client_state,
            "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        }

    def deliveries(self, n: int, copies: int, naive: bool) -> list[Delivery]:
        path = "/local/naive/webhooks/graph" if naive else "/webhooks/graph"
        out: list[Delivery] = []
        later: list[Delivery] = []
        for i in range(n):
            body = json.dumps({"value": [self._item(i, "created", 'W/"etag-1"')]}).encode()
            # Copies back to back: the client threads pick them up together, so they race.
            out += [Delivery(i, "POST", path, JSON, body, "burst") for _ in range(max(1, copies - 1))]
            if copies > 1:
                later.append(Delivery(i, "POST", path, JSON, body, "later"))
            if self.updated:
                upd = json.dumps({"value": [self._item(i, "updated", 'W/"etag-2"')]}).encode()
                later.append(Delivery(i, "POST", path, JSON, upd, "later"))
        return out + later

    def event_keys(self, n: int) -> list[str]:
        from exactly_once.adapters.graph import item_key

        keys = [item_key(self._item(i, "created", 'W/"etag-1"')) for i in range(n)]
        if self.updated:
            keys += [item_key(self._item(i, "updated", 'W/"etag-2"')) for i in range(n)]
        return keys

    def effects(self, conn: psycopg.Connection[Any], n: int, naive: bool) -> list[int]:
        ids = [self._imid(i) for i in range(n)]
        found = dict(conn.execute(q("naive_counts" if naive else "storm_tickets"), {"ids": ids}).fetchall())
        return [int(found.get(mid, 0)) for mid in ids]


def fake_counts(client: StormClient, kind: str) -> dict[str, int]:
    """Calls the fake providers recorded for ``kind``, by key."""
    return {e["key"]: int(e["count"]) for e in client.json("GET", "/local/effects") if e["kind"] == kind}


class LiveKitFlow:
    """LiveKit room_finished -> one feedback analysis per call. The effect: LLM calls per room at the fake.

    Each room's ``room_finished`` is delivered ``copies`` times with the same event id
    (stopped at ingest), and, when ``second`` is set, once more under another event id,
    as a second LiveKit node would send it: it passes ingest and the queue, and the
    Postgres claim (no 'initiated' row left) stops it.
    """

    name = "livekit"
    supports_naive = False

    def __init__(self, api_key: str, api_secret: str, database_url: str, second: bool = True) -> None:
        self.api_key, self.api_secret = api_key, api_secret
        self.database_url = database_url
        self.second = second
        self.run = uuid.uuid4().hex[:10]
        self.client: StormClient | None = None

    def unavailable(self, routes: set[str]) -> str | None:
        if "POST /webhooks/livekit" not in routes:
            return "no POST /webhooks/livekit route in the template"
        try:
            import livekit.api  # noqa: F401 - signs the webhooks as LiveKit's server does
        except ImportError:
            return "the livekit-api package is not installed"
        return None

    def _sid(self, i: int) -> str:
        return f"RM_storm{self.run}{i}"

    def prepare(self, client: StormClient, n: int) -> None:
        self.client = client
        with psycopg.connect(self.database_url, autocommit=True) as conn, conn.transaction():
            for i in range(n):
                params = {"user_id": f"user-{i}", "room_sid": self._sid(i), "room_name": f"storm-{self.run}-{i}"}
                conn.execute(q("storm_feedback_add"), params)

    def _body(self, i: int, event_id: str) -> bytes:
        room = {"sid": self._sid(i), "name": f"storm-{self.run}-{i}", "emptyTimeout": 300, "creationTime": "1732262400"}
        body = {"event": "room_finished", "room": room, "id": event_id, "createdAt": "1732262460"}
        return json.dumps(body, separators=(",", ":")).encode()

    def _headers(self, body: bytes) -> dict[str, str]:
        import base64
        import datetime
        import hashlib

        from livekit import api

        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        token = api.AccessToken(self.api_key, self.api_secret).with_sha256(digest)
        jwt = token.with_ttl(datetime.timedelta(minutes=10)).to_jwt()
        return {"content-type": "application/webhook+json", "authorization": jwt}

    def _event_id(self, i: int, second: bool = False) -> str:
        return f"EV_{self.run}_{i}" + ("_b" if second else "")

    def deliveries(self, n: int, copies: int, naive: bool) -> list[Delivery]:
        out: list[Delivery] = []
        later: list[Delivery] = []
        for i in range(n):
            body = self._body(i, self._event_id(i))
            headers = self._headers(body)
            out += [Delivery(i, "POST", "/webhooks/livekit", headers, body, "burst") for _ in range(max(1, copies - 1))]
            if copies > 1:
                later.append(Delivery(i, "POST", "/webhooks/livekit", headers, body, "later"))
            if self.second:
                other = self._body(i, self._event_id(i, second=True))
                later.append(Delivery(i, "POST", "/webhooks/livekit", self._headers(other), other, "later"))
        return out + later

    def event_keys(self, n: int) -> list[str]:
        keys = [f"livekit:{self._event_id(i)}" for i in range(n)]
        if self.second:
            keys += [f"livekit:{self._event_id(i, second=True)}" for i in range(n)]
        return keys

    def effects(self, conn: psycopg.Connection[Any], n: int, naive: bool) -> list[int]:
        assert self.client is not None
        calls = fake_counts(self.client, "llm.chat")
        return [calls.get(self._sid(i), 0) for i in range(n)]


class WhatsAppFlow:
    """WhatsApp inbound text -> one bot reply. The effect: sends per message at the fake WhatsApp API.

    Every message comes from its own customer (its own FIFO group), and the default
    responder answers "<text> is working", sent through the send queue.
    """

    name = "whatsapp"
    supports_naive = False
    phone_number_id = "106540352242922"

    def __init__(self, app_secret: str) -> None:
        self.app_secret = app_secret
        self.run = uuid.uuid4().hex[:10]
        self.client: StormClient | None = None

    def unavailable(self, routes: set[str]) -> str | None:
        return None if "POST /webhooks/whatsapp" in routes else "no POST /webhooks/whatsapp route in the template"

    def prepare(self, client: StormClient, n: int) -> None:
        self.client = client

    def _customer(self, i: int) -> str:
        return f"1999{int(self.run[:6], 16) % 10_000:04d}{i:05d}"

    def _text(self, i: int) -> str:
        return f"storm-{self.run}-{i}"

    def _wamid(self, i: int) -> str:
        return f"wamid.STORM{self.run}{i}"

    def deliveries(self, n: int, copies: int, naive: bool) -> list[Delivery]:
        import hashlib
        import hmac

        out: list[Delivery] = []
        later: list[Delivery] = []
        for i in range(n):
            message = {
                "from": self._customer(i),
                "id": self._wamid(i),
                "timestamp": "1795334400",
                "type": "text",
                "text": {"body": self._text(i)},
            }
            value = {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": self.phone_number_id},
                "contacts": [{"profile": {"name": "Storm"}, "wa_id": self._customer(i)}],
                "messages": [message],
            }
            payload = {
                "object": "whatsapp_business_account",
                "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}],
            }
            # Meta signs compact JSON with non-ASCII escaped: the exact bytes it posts.
            raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")
            signature = "sha256=" + hmac.new(self.app_secret.encode(), raw, hashlib.sha256).hexdigest()
            headers = {**JSON, "x-hub-signature-256": signature}
            out += [Delivery(i, "POST", "/webhooks/whatsapp", headers, raw, "burst") for _ in range(max(1, copies - 1))]
            if copies > 1:
                later.append(Delivery(i, "POST", "/webhooks/whatsapp", headers, raw, "later"))
        return out + later

    def event_keys(self, n: int) -> list[str]:
        return [f"whatsapp:msg:{self._wamid(i)}" for i in range(n)]

    def effects(self, conn: psycopg.Connection[Any], n: int, naive: bool) -> list[int]:
        assert self.client is not None
        sends = fake_counts(self.client, "whatsapp.send")
        return [sends.get(f"{self._customer(i)}:{self._text(i)} is working", 0) for i in range(n)]


def discover(parameters: dict[str, str], routes: set[str], graph_updated: bool = True) -> list[tuple[Flow, str | None]]:
    """Every known flow with the reason it cannot run here (None: it runs)."""
    flows: list[Flow] = [
        GraphFlow(parameters.get("GRAPH_CLIENT_STATE", ""), updated=graph_updated),
        LiveKitFlow(
            parameters.get("LIVEKIT_API_KEY", ""),
            parameters.get("LIVEKIT_API_SECRET", ""),
            parameters.get("DATABASE_URL", ""),
            second=graph_updated,
        ),
        WhatsAppFlow(parameters.get("WHATSAPP_APP_SECRET", "")),
    ]
    return [(flow, flow.unavailable(routes)) for flow in flows]
