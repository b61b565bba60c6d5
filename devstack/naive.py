"""The naive baselines ``make demo --naive`` storms: check, then insert (the Graph mail incident's code before its fix).

``POST /local/naive/webhooks/graph`` takes the same signed Graph notifications as
the real route, but handles each one synchronously in the request, with no ingest
dedup, no queue, no lock and no unique constraint: fetch the mail, SELECT whether a
ticket exists, INSERT one if not, into ``naive_tickets``. Concurrent duplicates
both pass the SELECT; the demo counts what that costs.

The other twins work the same way, into ``naive_records`` (flow, key), no constraint:

- ``POST /local/naive/webhooks/{stripe,github,slack,standard/<source>}``: the real
  adapter authenticates and splits; each event is recorded if a SELECT finds no record
  of its key (the bundle's effect for these providers is its ``event_log`` row).
- ``POST /local/naive/webhooks/unipile``: the same for each LinkedIn message, keyed by
  (account, message id) as ``linkedin_messages`` is.
- ``POST /local/naive/sends``: ``POST /sends`` without the send queue: SELECT whether
  the Idempotency-Key was sent, send through the Unipile client if not, then record it
  (check, act, insert). Only to the stack's fake Unipile, with the operator token.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg

from devstack.containers import Containers, Throttled, current
from devstack.gateway import Answer, json_answer
from devstack.lambda_runtime import apigw_event
from devstack.queries import q

if TYPE_CHECKING:
    from devstack.gateway import Gateway

_RESOURCE = re.compile(r"^/?users/([^/]+)/messages/([^/?]+)", re.IGNORECASE)


def ensure_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(q("naive_schema"))


def check_then_insert(conn: psycopg.Connection[Any], flow: str, key: str) -> bool:
    """The race this bundle exists to close: SELECT, then INSERT if nothing was found."""
    params = {"flow": flow, "key": key}
    if conn.execute(q("naive_record_exists"), params).fetchone() is not None:
        return False
    conn.execute(q("naive_record_insert"), params)
    return True


def install(gateway: Gateway, env: dict[str, str], containers: Containers) -> None:
    from exactly_once.core.errors import HttpError
    from exactly_once.flows.graph.adapter import GraphAdapter
    from exactly_once.flows.graph.client import GraphClient
    from exactly_once.ingest.apigw import Request

    adapter = GraphAdapter(env.get("GRAPH_CLIENT_STATE", ""))
    graph = GraphClient.from_env()

    def connection() -> psycopg.Connection[Any]:
        container = current()
        assert container is not None, "the naive twins run in a container (see _in_containers)"
        conn: psycopg.Connection[Any] = container.connection()
        return conn

    gateway.local.update(_webhook_twins(env, connection))
    gateway.local[("POST", "/local/naive/sends")] = _sends_twin(env, connection)

    def graph_naive(method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Answer:
        request = Request.from_apigw_v2(apigw_event(method, raw_path, body, headers))
        try:
            events = adapter.split(request).events
        except HttpError as exc:
            return json_answer(exc.status, {"error": exc.code})
        created = 0
        for event in events:
            match = _RESOURCE.match(str(event.payload.get("resource") or ""))
            if match is None:
                continue
            mail = graph.get_message(match.group(1), match.group(2))
            conn = connection()
            params = {"message_id": mail.internet_message_id, "subject": mail.subject}
            if conn.execute(q("naive_exists"), params).fetchone() is None:
                conn.execute(q("naive_insert"), params)
                created += 1
        return json_answer(202, {"created": created})

    gateway.local[("POST", "/local/naive/webhooks/graph")] = graph_naive
    _in_containers(gateway, containers)


def _in_containers(gateway: Gateway, containers: Containers) -> None:
    """Each twin's request in a container of the stack's (one kept connection each, within the account limit)."""

    def wrap(handler: Any) -> Any:
        def in_container(method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Answer:
            try:
                with containers.invocation("LocalNaiveTwins"):
                    answer: Answer = handler(method, raw_path, headers, body)
                    return answer
            except Throttled:
                return json_answer(429, {"message": "Too Many Requests"})

        return in_container

    for key, handler in list(gateway.local.items()):
        if key[1].startswith("/local/naive/"):
            gateway.local[key] = wrap(handler)


Connect = Callable[[], psycopg.Connection[Any]]


def _webhook_twins(env: dict[str, str], connection: Connect) -> dict[tuple[str, str], Any]:
    """The generic adapters' and Unipile's twins, for each adapter whose secret is configured."""
    from exactly_once.core.errors import ExactlyOnceError, HttpError
    from exactly_once.core.events import InboundEvent
    from exactly_once.flows.generic.github import GitHubAdapter
    from exactly_once.flows.generic.slack import SlackAdapter
    from exactly_once.flows.generic.standard import StandardWebhooksAdapter, parse_secrets
    from exactly_once.flows.generic.stripe import StripeAdapter
    from exactly_once.flows.unipile.adapter import UnipileAdapter
    from exactly_once.ingest.adapters.base import WebhookAdapter
    from exactly_once.ingest.apigw import Request

    def unipile_key(event: InboundEvent) -> str | None:
        account, message = event.payload.get("account_id"), event.payload.get("message_id")
        return f"{account}:{message}" if event.kind == "message_received" and account and message else None

    def twin(adapter: WebhookAdapter, key_of: Callable[[InboundEvent], str | None]) -> Any:
        def handle(method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Answer:
            request = Request.from_apigw_v2(apigw_event(method, raw_path, body, headers))
            try:
                adapter.authenticate(request)
                events = adapter.split(request).events
            except HttpError as exc:
                return json_answer(exc.status, {"error": exc.code})
            recorded = 0
            for event in events:
                key = key_of(event)
                if key is not None and check_then_insert(connection(), adapter.provider, key):
                    recorded += 1
            return json_answer(200, {"recorded": recorded})

        return handle

    builders: dict[str, Callable[[], WebhookAdapter]] = {
        "stripe": StripeAdapter.from_env,
        "github": GitHubAdapter.from_env,
        "slack": SlackAdapter.from_env,
        "unipile": UnipileAdapter.from_env,
    }
    routes: dict[tuple[str, str], Any] = {}
    for name, build in builders.items():
        try:
            adapter = build()
        except ExactlyOnceError:
            continue  # its secret is not configured: the real route answers 503 too
        key_of = unipile_key if name == "unipile" else (lambda event: event.key)
        routes[("POST", f"/local/naive/webhooks/{name}")] = twin(adapter, key_of)
    try:
        standard = StandardWebhooksAdapter.from_env()
        sources = sorted(parse_secrets(env.get("STANDARD_WEBHOOK_SECRETS", "")))
    except ExactlyOnceError:
        sources = []
    for source in sources:
        routes[("POST", f"/local/naive/webhooks/standard/{source}")] = twin(standard, lambda event: event.key)
    return routes


def _sends_twin(env: dict[str, str], connection: Connect) -> Any:
    from exactly_once.sends.unipile_api import UnipileClient

    token = env.get("API_TOKEN", "")
    fake = "/fake/" in env.get("UNIPILE_BASE_URL", "")
    client = UnipileClient.from_env() if fake and env.get("UNIPILE_API_KEY") else None

    def sends_naive(method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Answer:
        given = headers.get("authorization", "")
        if not token or not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return json_answer(403, {"error": "forbidden"})
        if client is None:
            return json_answer(503, {"error": "UNIPILE_BASE_URL is not the stack's fake: no naive sends"})
        key = headers.get("idempotency-key", "")
        try:
            request = json.loads(body)
            chat, text = str(request["recipient"]), str(request["payload"]["text"])
        except (ValueError, KeyError, TypeError):
            return json_answer(400, {"error": "recipient and payload.text are required"})
        if not key:
            return json_answer(400, {"error": "Idempotency-Key is required"})
        conn = connection()
        if conn.execute(q("naive_record_exists"), {"flow": "sends", "key": key}).fetchone() is not None:
            return json_answer(200, {"sent": 0})
        client.send_message(chat, text)  # between the check and the insert: the window a racing copy uses
        conn.execute(q("naive_record_insert"), {"flow": "sends", "key": key})
        return json_answer(201, {"sent": 1})

    return sends_naive
