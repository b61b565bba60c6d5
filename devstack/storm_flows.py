"""The provider flows a storm can drive, discovered from the running stack's routes.

A flow is used when its route is in the template (GET /local/routes) and what it
needs locally exists; otherwise the demo says why it skipped it. Add a provider's
flow here: a route, signed deliveries, the dedup keys its adapter derives, and where
its effect is counted.

Flows and their effect: Graph (``tickets`` rows), LiveKit (LLM calls at the fake
OpenAI), WhatsApp (reply sends at the fake WhatsApp), Unipile (``linkedin_messages``
rows), the generic adapters Standard Webhooks, Stripe, GitHub and Slack (``event_log``
rows: their effect is the record), and the send queue (``POST /sends``: messages at
the fake Unipile per idempotency key). A flow with ``supports_naive`` has a
check-then-insert twin in devstack/naive.py.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import psycopg

from devstack.fake_graph import graph_message
from devstack.queries import q
from devstack.sign_sample import resign
from devstack.storm import Delivery, Flow, StormClient

GRAPH_MAILBOXES = 8  # FIFO groups: one per mailbox, so several pollers can work at once
GRAPH_SUB = "5a0e5a0e-2dc5-4530-97cd-4e7ae6534c07"
JSON = {"content-type": "application/json"}
SEND_ACCOUNTS = 8  # sender accounts of the send storm: its FIFO groups and pacing units
#: Layers a flow without webhook ingest (POST /sends) does not have.
NO_INGEST_LAYERS = frozenset({"dynamodb_ingest", "sqs_fifo", "worker_event_log"})


class StormFlow:
    """What every flow has unless it says otherwise."""

    supports_naive = False
    default_events = 200
    absent_layers: frozenset[str] = frozenset()


def copies_of(one: Delivery, copies: int) -> tuple[list[Delivery], list[Delivery]]:
    """(burst, later) deliveries of one event: ``copies - 1`` back to back, one more later."""
    burst = [one for _ in range(max(1, copies - 1))]
    return burst, [replace(one, wave="later")] if copies > 1 else []


def via_fake(parameters: dict[str, str], name: str) -> str | None:
    """Why a flow must not run when ``name`` points at a real provider API, else None."""
    url = parameters.get(name, "")
    if "/fake/" in url:
        return None
    return f"{name} is not the stack's fake ({url or 'unset'}): the storm would message real people"


class GraphFlow(StormFlow):
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
        # The stack's managed subscription and its mailbox (prepare reads them); without one (no mailbox
        # watched) the fixed GRAPH_SUB over GRAPH_MAILBOXES fake users, every notification fetched.
        self.subscription, self.mailbox = GRAPH_SUB, ""

    def unavailable(self, routes: set[str]) -> str | None:
        return None if "POST /webhooks/graph" in routes else "no POST /webhooks/graph route in the template"

    def _user(self, i: int) -> str:
        if self.mailbox:  # a watched mailbox: only notifications naming it are fetched (one FIFO group)
            return self.mailbox
        return f"0b1c2d3e-0000-4000-8000-{i % GRAPH_MAILBOXES:012d}"

    def _mid(self, i: int) -> str:
        return f"storm-{self.run}-{i}"

    def _imid(self, i: int) -> str:
        return f"<storm-{self.run}-{i}@demo.local>"

    def use_managed(self, client: StormClient) -> None:
        """Notify on the stack's managed subscription, as Graph would: once a mailbox is watched, a
        notification for a subscription the stack did not make is quarantined, never fetched."""
        managed = client.json("GET", "/local/state").get("graph_subscriptions") or {}
        if managed:
            self.mailbox, self.subscription = sorted(managed.items())[0]

    def prepare(self, client: StormClient, n: int) -> None:
        self.use_managed(client)

        def one(i: int) -> None:
            message = graph_message(self._mid(i), self._imid(i), conversation_id=f"conv-{self.run}-{i}")
            user = self._user(i)
            client.json("POST", "/fake/_fake/state", {"provider": "graph", "user": user, "message": message})

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(one, range(n)))

    def _item(self, i: int, change: str, etag: str) -> dict[str, Any]:
        resource = f"Users/{self._user(i)}/Messages/{self._mid(i)}"
        return {
            "subscriptionId": self.subscription,
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
        from exactly_once.flows.graph.adapter import item_key

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


class LiveKitFlow(StormFlow):
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


class WhatsAppFlow(StormFlow):
    """WhatsApp inbound text -> one bot reply. The effect: sends per message at the fake WhatsApp API.

    Every message comes from its own customer (its own FIFO group), and the default
    responder answers "<text> is working", sent through the send queue. The business
    number is new per storm: the replies' sender account, whose daily cap (SEND_DAILY_CAP)
    a fixed number would reach after a few demos in the same database.
    """

    name = "whatsapp"

    def __init__(self, app_secret: str, base_url_check: str | None = None) -> None:
        self.app_secret = app_secret
        self.run = uuid.uuid4().hex[:10]
        self.phone_number_id = f"1065{int(self.run[:8], 16) % 10**11:011d}"
        self.sent_at = str(int(time.time()))  # one stamp for every copy of a message: copies stay identical
        self.base_url_check = base_url_check
        self.client: StormClient | None = None

    def unavailable(self, routes: set[str]) -> str | None:
        if "POST /webhooks/whatsapp" not in routes:
            return "no POST /webhooks/whatsapp route in the template"
        return self.base_url_check

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
                "timestamp": self.sent_at,  # now: the reply must fall inside the 24-hour window
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


def naive_counts(conn: psycopg.Connection[Any], flow: str, keys: list[str]) -> list[int]:
    """Rows the check-then-insert twin (devstack/naive.py) wrote per key."""
    found = dict(conn.execute(q("naive_record_counts"), {"flow": flow, "keys": keys}).fetchall())
    return [int(found.get(k, 0)) for k in keys]


def log_rows(conn: psycopg.Connection[Any], provider: str, keys: list[str]) -> list[int]:
    """``event_log`` rows per key (the unique constraint makes it 0 or 1: the row IS the effect)."""
    found: dict[str, int] = {}
    for key, _outcome, _deliveries in conn.execute(q("storm_event_log"), {"provider": provider, "keys": keys}):
        found[key] = found.get(key, 0) + 1
    return [found.get(k, 0) for k in keys]


class UnipileFlow(StormFlow):
    """Unipile ``message_received`` -> one ``linkedin_messages`` row per (account, message).

    One connected account; every message in its own chat (its own FIFO group), written
    by a prospect (inbound). Unipile does not sign: the webhook carries the static secret
    header it was created with.
    """

    name = "unipile"
    supports_naive = True
    default_events = 50

    def __init__(self, secret: str, header: str = "X-Webhook-Secret") -> None:
        self.secret, self.header = secret, header
        self.run = uuid.uuid4().hex[:10]
        self.account = f"storm{self.run}"

    def unavailable(self, routes: set[str]) -> str | None:
        if "POST /webhooks/unipile" not in routes:
            return "no POST /webhooks/unipile route in the template"
        return None if self.secret else "UNIPILE_WEBHOOK_SECRET is not set"

    def prepare(self, client: StormClient, n: int) -> None:
        pass

    def _message_id(self, i: int) -> str:
        return f"msg{self.run}{i}"

    def _body(self, i: int) -> bytes:
        body = {
            "account_id": self.account,
            "account_type": "LINKEDIN",
            "account_info": {"type": "LINKEDIN", "feature": "classic", "user_id": "ACoAAStormOwn"},
            "event": "message_received",
            "chat_id": f"chat{self.run}{i}",
            "timestamp": "2026-11-21T23:49:07.965Z",
            "webhook_name": "exactly-once",
            "message_id": self._message_id(i),
            "message": f"storm {self.run} message {i}",
            "sender": {
                "attendee_id": f"att{self.run}{i}",
                "attendee_name": "Storm Prospect",
                "attendee_provider_id": f"ACoAAStorm{i}",
            },
        }
        return json.dumps(body).encode()

    def deliveries(self, n: int, copies: int, naive: bool) -> list[Delivery]:
        path = "/local/naive/webhooks/unipile" if naive else "/webhooks/unipile"
        headers = {**JSON, self.header.lower(): self.secret, "user-agent": "Unipile"}
        out: list[Delivery] = []
        later: list[Delivery] = []
        for i in range(n):
            burst, late = copies_of(Delivery(i, "POST", path, headers, self._body(i), "burst"), copies)
            out += burst
            later += late
        return out + later

    def event_keys(self, n: int) -> list[str]:
        return [f"unipile:{self.account}:message_received:{self._message_id(i)}" for i in range(n)]

    def effects(self, conn: psycopg.Connection[Any], n: int, naive: bool) -> list[int]:
        ids = [self._message_id(i) for i in range(n)]
        if naive:
            return naive_counts(conn, "unipile", [f"{self.account}:{m}" for m in ids])
        found = dict(conn.execute(q("storm_linkedin_messages"), {"account": self.account, "ids": ids}).fetchall())
        return [int(found.get(m, 0)) for m in ids]


#: Generic adapters: route, the secret its adapter verifies with, the event_log key of an id.
GENERIC = {
    "standard": ("POST /webhooks/standard/{source}", "STANDARD_WEBHOOK_SECRETS"),
    "stripe": ("POST /webhooks/stripe", "STRIPE_WEBHOOK_SECRET"),
    "github": ("POST /webhooks/github", "GITHUB_WEBHOOK_SECRET"),
    "slack": ("POST /webhooks/slack", "SLACK_SIGNING_SECRET"),
}


class GenericFlow(StormFlow):
    """Standard Webhooks, Stripe, GitHub or Slack -> one ``event_log`` row per event.

    These providers' effect is the record itself (processors/generic_event.py). Each
    delivery is signed as the provider signs it (devstack/sign_sample.py), at the moment
    it is sent: Standard Webhooks, Stripe and Slack sign a timestamp that must be within
    5 minutes, and sign every attempt anew.
    """

    supports_naive = True
    default_events = 50

    def __init__(self, provider: str, secrets: dict[str, str]) -> None:
        self.name = provider
        self.route, self.secret_name = GENERIC[provider]
        self.secrets = secrets
        self.run = uuid.uuid4().hex[:10]
        self.source = ""
        if provider == "standard":
            try:
                configured = json.loads(secrets.get(self.secret_name) or "{}")
            except ValueError:
                configured = {}
            self.source = sorted(configured)[0] if isinstance(configured, dict) and configured else ""

    def unavailable(self, routes: set[str]) -> str | None:
        if self.route not in routes:
            return f"no {self.route} route in the template"
        if not self.secrets.get(self.secret_name):
            return f"{self.secret_name} is not set"
        if self.name == "standard" and not self.source:
            return f"{self.secret_name} names no source"
        return None

    def prepare(self, client: StormClient, n: int) -> None:
        pass

    def _path(self, naive: bool) -> str:
        path = f"/webhooks/standard/{self.source}" if self.name == "standard" else f"/webhooks/{self.name}"
        return "/local/naive" + path if naive else path

    def _id(self, i: int) -> str:
        return {
            "standard": f"msg_storm{self.run}{i}",
            "stripe": f"evt_storm{self.run}{i}",
            "github": str(uuid.uuid5(uuid.NAMESPACE_URL, f"storm/{self.run}/{i}")),
            "slack": f"EvSTORM{self.run}{i}",
        }[self.name]

    def _key(self, i: int) -> str:
        if self.name == "github":  # keyed by the signed bytes: the delivery header is unsigned
            return f"github:body:{hashlib.sha256(self._body(i)).hexdigest()}"
        return f"standard:{self.source}:{self._id(i)}" if self.name == "standard" else f"{self.name}:{self._id(i)}"

    def _body(self, i: int) -> bytes:
        event_id, label = self._id(i), f"storm-{self.run}-{i}"
        body: dict[str, Any]
        if self.name == "standard":
            body = {"type": "invoice.paid", "timestamp": "2026-11-22T00:00:00Z", "data": {"invoice_id": label}}
        elif self.name == "stripe":
            obj = {"id": f"pi_{label}", "object": "payment_intent", "amount": 4200, "status": "succeeded"}
            body = {"id": event_id, "object": "event", "type": "payment_intent.succeeded", "data": {"object": obj}}
        elif self.name == "github":
            repo = {"id": i, "full_name": f"storm-org/{label}", "name": label}
            body = {"ref": "refs/heads/main", "after": uuid.uuid5(uuid.NAMESPACE_OID, label).hex, "repository": repo}
        else:
            event = {"type": "app_mention", "text": label, "channel": f"C{self.run}{i}", "event_ts": "1795334399.0001"}
            body = {"team_id": "TSTORM", "type": "event_callback", "event": event, "event_id": event_id}
        return json.dumps(body, separators=(",", ":")).encode()

    def _headers(self, i: int) -> dict[str, str]:
        if self.name == "standard":
            return {**JSON, "webhook-id": self._id(i), "user-agent": "Svix-Webhooks/1.0"}
        if self.name == "github":
            return {**JSON, "x-github-event": "push", "x-github-delivery": self._id(i), "x-github-hook-id": "4242"}
        return dict(JSON)

    def _signer(self, path: str, headers: dict[str, str]) -> Callable[[bytes], dict[str, str]]:
        # sign_sample picks the scheme by the real route's path, whichever path the copy goes to.
        real = path.removeprefix("/local/naive")

        def sign(body: bytes) -> dict[str, str]:
            event = {"rawPath": real, "body": body.decode(), "headers": headers}
            signed: dict[str, str] = resign(event, self.secrets)["headers"]
            return signed

        return sign

    def deliveries(self, n: int, copies: int, naive: bool) -> list[Delivery]:
        path = self._path(naive)
        out: list[Delivery] = []
        later: list[Delivery] = []
        for i in range(n):
            headers = self._headers(i)
            one = Delivery(i, "POST", path, headers, self._body(i), "burst", sign=self._signer(path, headers))
            burst, late = copies_of(one, copies)
            out += burst
            later += late
        return out + later

    def event_keys(self, n: int) -> list[str]:
        return [self._key(i) for i in range(n)]

    def effects(self, conn: psycopg.Connection[Any], n: int, naive: bool) -> list[int]:
        keys = self.event_keys(n)
        return naive_counts(conn, self.name, keys) if naive else log_rows(conn, self.name, keys)


class SendsFlow(StormFlow):
    """``POST /sends`` (operator token, ``Idempotency-Key``) -> one message at the fake Unipile per key.

    A caller that retries: each send posted ``copies - 1`` times at once, once more later,
    with the same key and body. No webhook ingest: the first layer is Postgres (the key's
    unique constraint answers 200 with the existing row), then the atomic claim of the
    worker. Sender accounts are new per storm (their daily cap is per account and day).
    """

    name = "sends"
    supports_naive = True
    default_events = 50
    absent_layers = NO_INGEST_LAYERS

    def __init__(self, api_token: str, base_url_check: str | None = None) -> None:
        self.api_token = api_token
        self.base_url_check = base_url_check
        self.run = uuid.uuid4().hex[:10]
        self.client: StormClient | None = None

    def unavailable(self, routes: set[str]) -> str | None:
        if "POST /sends" not in routes:
            return "no POST /sends route in the template"
        if not self.api_token:
            return "API_TOKEN is not set"
        return self.base_url_check

    def prepare(self, client: StormClient, n: int) -> None:
        self.client = client

    def _chat(self, i: int) -> str:
        return f"chat_storm_{self.run}_{i}"

    def _text(self, i: int) -> str:
        return f"storm {self.run} send {i}"

    def deliveries(self, n: int, copies: int, naive: bool) -> list[Delivery]:
        path = "/local/naive/sends" if naive else "/sends"
        out: list[Delivery] = []
        later: list[Delivery] = []
        for i in range(n):
            body = {
                "channel": "unipile",
                "sender_account": f"acc_storm_{self.run}_{i % SEND_ACCOUNTS}",
                "recipient": self._chat(i),
                "payload": {"text": self._text(i)},
            }
            headers = {
                **JSON,
                "authorization": f"Bearer {self.api_token}",
                "idempotency-key": f"storm:{self.run}:{i}",
            }
            raw = json.dumps(body).encode()
            burst, late = copies_of(Delivery(i, "POST", path, headers, raw, "burst"), copies)
            out += burst
            later += late
        return out + later

    def event_keys(self, n: int) -> list[str]:
        return []  # no event log: the send_queue row is keyed by the idempotency key

    def effects(self, conn: psycopg.Connection[Any], n: int, naive: bool) -> list[int]:
        assert self.client is not None
        sends = fake_counts(self.client, "unipile.send")
        return [sends.get(f"{self._chat(i)}:{self._text(i)}", 0) for i in range(n)]


def discover(
    parameters: dict[str, str],
    routes: set[str],
    graph_updated: bool = True,
    functions: dict[str, dict[str, str]] | None = None,
) -> list[tuple[Flow, str | None]]:
    """Every known flow with the reason it cannot run here (None: it runs).

    ``parameters`` is env.local.json's ``Parameters``; ``functions`` the whole file, for a
    function's own variables (the Unipile webhook's header name).
    """
    unipile_env = (functions or {}).get("UnipileIngestFunction", {})
    header = unipile_env.get("UNIPILE_WEBHOOK_HEADER") or parameters.get("UNIPILE_WEBHOOK_HEADER") or "X-Webhook-Secret"
    flows: list[Flow] = [
        GraphFlow(parameters.get("GRAPH_CLIENT_STATE", ""), updated=graph_updated),
        LiveKitFlow(
            parameters.get("LIVEKIT_API_KEY", ""),
            parameters.get("LIVEKIT_API_SECRET", ""),
            parameters.get("DATABASE_URL", ""),
            second=graph_updated,
        ),
        WhatsAppFlow(parameters.get("WHATSAPP_APP_SECRET", ""), via_fake(parameters, "WHATSAPP_BASE_URL")),
        UnipileFlow(parameters.get("UNIPILE_WEBHOOK_SECRET", ""), header),
        *(GenericFlow(provider, parameters) for provider in GENERIC),
        SendsFlow(parameters.get("API_TOKEN", ""), via_fake(parameters, "UNIPILE_BASE_URL")),
    ]
    return [(flow, flow.unavailable(routes)) for flow in flows]
