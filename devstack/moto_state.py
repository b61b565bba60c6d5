"""Keeps the embedded AWS's data across ``make run`` restarts.

moto keeps everything in memory and its SQS backend does not pickle (queues hold
locks), so the stack snapshots what matters to the guarantees into one JSON file:
DynamoDB items (the ingest dedup records, with their TTL attribute) through the API,
and the messages still queued (body, group, dedup id) through the serialised
server's peek endpoint. Resources themselves are recreated from template.yaml at every start.
A restore re-sends the messages: their receive counts start over.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path
from typing import Any

from devstack.aws_local import LocalAws, boto_client
from devstack.moto_server import PEEK_PATH

log = logging.getLogger("devstack.moto_state")


def snapshot(aws: LocalAws) -> dict[str, Any]:
    ddb = boto_client("dynamodb", aws.endpoint)
    tables: dict[str, list[dict[str, Any]]] = {}
    for table in aws.template.of_type("AWS::DynamoDB::Table"):
        items: list[dict[str, Any]] = []
        for page in ddb.get_paginator("scan").paginate(TableName=table):
            items.extend(page["Items"])
        tables[table] = items
    return {"dynamodb": tables, "sqs": _queued_messages(aws)}


def _queued_messages(aws: LocalAws) -> dict[str, list[dict[str, Any]]]:
    """The messages still queued, by logical id (SerializedMotoServer's peek: SQS cannot peek)."""
    with urllib.request.urlopen(aws.endpoint + PEEK_PATH, timeout=30) as resp:  # the local moto only
        by_name: dict[str, list[dict[str, Any]]] = json.loads(resp.read())
    found: dict[str, list[dict[str, Any]]] = {}
    for logical, url in aws.physical.items():
        if url.startswith("http") and url.rsplit("/", 1)[1] in by_name:
            found[logical] = by_name[url.rsplit("/", 1)[1]]
    return found


def restore(aws: LocalAws, data: dict[str, Any]) -> dict[str, int]:
    ddb = boto_client("dynamodb", aws.endpoint)
    sqs = boto_client("sqs", aws.endpoint)
    counts = {"items": 0, "messages": 0}
    for table, items in data.get("dynamodb", {}).items():
        if table not in aws.physical:
            continue  # the table left the template
        for start in range(0, len(items), 25):
            chunk = items[start : start + 25]
            ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": i}} for i in chunk]})
            counts["items"] += len(chunk)
    for queue, messages in data.get("sqs", {}).items():
        url = aws.physical.get(queue)
        if url is None:
            continue
        for m in messages:
            args: dict[str, Any] = {"QueueUrl": url, "MessageBody": m["body"]}
            if m.get("group"):
                args["MessageGroupId"] = m["group"]
            if m.get("dedup"):
                args["MessageDeduplicationId"] = m["dedup"]
            sqs.send_message(**args)
            counts["messages"] += 1
    return counts


def save(aws: LocalAws, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(snapshot(aws)), encoding="utf-8")
    tmp.replace(path)


def load(aws: LocalAws, path: Path) -> dict[str, int]:
    if not path.exists():
        return {"items": 0, "messages": 0}
    try:
        return restore(aws, json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError) as exc:
        log.warning("ignoring an unreadable AWS snapshot %s: %s", path, exc)
        return {"items": 0, "messages": 0}
