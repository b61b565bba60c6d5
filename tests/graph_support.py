"""Graph notification bodies and fake mailbox setup for tests."""

from __future__ import annotations

import json
from typing import Any

from devstack.aws_local import boto_client
from devstack.fake_graph import graph_message
from tests.harness import TEST_SECRETS, Stack

USER = "6a7b1c2d-0000-4000-8000-000000000001"
SUB = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
URL = "http://127.0.0.1:3000/webhooks/graph"
HEADERS = {"content-type": "application/json"}


def item(
    message_id: str,
    change: str = "created",
    etag: str = 'W/"etag-1"',
    client_state: str | None = None,
    user: str = USER,
) -> dict[str, Any]:
    resource = f"Users/{user}/Messages/{message_id}"
    return {
        "subscriptionId": SUB,
        "subscriptionExpirationDateTime": "2026-11-25T08:00:00.0000000Z",
        "changeType": change,
        "resource": resource,
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": resource,
            "@odata.etag": etag,
            "id": message_id,
        },
        "clientState": TEST_SECRETS["GRAPH_CLIENT_STATE"] if client_state is None else client_state,
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
    }


def body(*items: dict[str, Any]) -> str:
    return json.dumps({"value": list(items)})


def add_mail(stack: Stack, message_id: str, internet_message_id: str, user: str = USER, **kw: Any) -> None:
    stack.fakes.state["setup:graph"]({"user": user, "message": graph_message(message_id, internet_message_id, **kw)})


def post(stack: Stack, payload: str | bytes, headers: dict[str, str] | None = None, url: str = URL):
    return stack.invoke_http("GraphIngestFunction", "POST", url, payload, headers or HEADERS)


def forget_ingest(stack: Stack) -> None:
    """Every ingest record gone (expired) and the Graph ingest in a new container (no local cache):
    a re-delivery now passes ingest, as one after the dedup window does."""
    ddb = boto_client("dynamodb", stack.aws.endpoint)
    for page in ddb.get_paginator("scan").paginate(TableName="IdempotencyTable"):
        for record in page["Items"]:
            ddb.delete_item(TableName="IdempotencyTable", Key={"id": record["id"]})
    stack._modules.pop("GraphIngestFunction")
