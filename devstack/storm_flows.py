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

GRAPH_USER = "0b1c2d3e-0000-4000-8000-00000000d3m0"
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

    def __init__(self, client_state: str, updated: bool = True) -> None:
        self.client_state = client_state
        self.updated = updated
        self.run = uuid.uuid4().hex[:10]

    def unavailable(self, routes: set[str]) -> str | None:
        return None if "POST /webhooks/graph" in routes else "no POST /webhooks/graph route in the template"

    def _mid(self, i: int) -> str:
        return f"storm-{self.run}-{i}"

    def _imid(self, i: int) -> str:
        return f"<storm-{self.run}-{i}@demo.local>"

    def prepare(self, client: StormClient, n: int) -> None:
        def one(i: int) -> None:
            message = graph_message(self._mid(i), self._imid(i), conversation_id=f"conv-{self.run}-{i}")
            client.json("POST", "/fake/_fake/state", {"provider": "graph", "user": GRAPH_USER, "message": message})

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(one, range(n)))

    def _item(self, i: int, change: str, etag: str) -> dict[str, Any]:
        resource = f"Users/{GRAPH_USER}/Messages/{self._mid(i)}"
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


def discover(parameters: dict[str, str], routes: set[str], graph_updated: bool = True) -> list[tuple[Flow, str | None]]:
    """Every known flow with the reason it cannot run here (None: it runs)."""
    flows: list[Flow] = [GraphFlow(parameters.get("GRAPH_CLIENT_STATE", ""), updated=graph_updated)]
    return [(flow, flow.unavailable(routes)) for flow in flows]
