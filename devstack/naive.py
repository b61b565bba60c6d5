"""The naive baseline ``make demo --naive`` storms: check, then insert (seed 000 before its fix).

``POST /local/naive/webhooks/graph`` takes the same signed Graph notifications as
the real route, but handles each one synchronously in the request, with no ingest
dedup, no queue, no lock and no unique constraint: fetch the mail, SELECT whether a
ticket exists, INSERT one if not, into ``naive_tickets``. Concurrent duplicates
both pass the SELECT; the demo counts what that costs.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any

import psycopg

from devstack.gateway import Answer, json_answer
from devstack.lambda_runtime import apigw_event
from devstack.queries import q

if TYPE_CHECKING:
    from devstack.gateway import Gateway

_RESOURCE = re.compile(r"^/?users/([^/]+)/messages/([^/?]+)", re.IGNORECASE)


def ensure_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(q("naive_schema"))


def install(gateway: Gateway, env: dict[str, str]) -> None:
    from exactly_once.adapters.graph import GraphAdapter
    from exactly_once.errors import HttpError
    from exactly_once.graph_client import GraphClient
    from exactly_once.http import Request

    adapter = GraphAdapter(env.get("GRAPH_CLIENT_STATE", ""))
    graph = GraphClient.from_env()
    local = threading.local()

    def connection() -> psycopg.Connection[Any]:
        conn = getattr(local, "conn", None)
        if conn is None or conn.closed:
            conn = local.conn = psycopg.connect(env["DATABASE_URL"], autocommit=True)
        return conn

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
