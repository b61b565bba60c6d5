"""Runs the template's handlers in-process the way Lambda would: events, context, SQS batches."""

from __future__ import annotations

import base64
import importlib
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devstack.template import ROOT, Template

LAYER_DIR = ROOT / "layers" / "common"
Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    function_name: str = "local"
    timeout_s: float = 10.0
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self.started)) * 1000))


def add_code_paths(template: Template | None = None) -> None:
    """Put the layer and every function folder on sys.path, as Lambda does for one function."""
    template = template or Template.load()
    paths = [str(LAYER_DIR)] + [
        str(ROOT / fn["Properties"]["CodeUri"]) for fn in template.functions().values() if "CodeUri" in fn["Properties"]
    ]
    for p in paths:
        if p not in sys.path:
            sys.path.insert(0, p)


def load_handler(function: str, template: Template | None = None) -> Handler:
    """Import ``Handler`` of the template's function (its module names are unique across functions)."""
    template = template or Template.load()
    add_code_paths(template)
    props = template.functions()[function]["Properties"]
    module_name, _, attr = str(props["Handler"]).rpartition(".")
    module = importlib.import_module(module_name)
    handler: Handler = getattr(module, attr)
    return handler


def function_timeout(function: str, template: Template | None = None) -> float:
    template = template or Template.load()
    props = template.functions()[function]["Properties"]
    glob = template.doc.get("Globals", {}).get("Function", {})
    return float(props.get("Timeout", glob.get("Timeout", 3)))


def apigw_event(
    method: str,
    url: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    path_params: Mapping[str, str] | None = None,
    route_key: str | None = None,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, as the real integration builds it."""
    parts = urlsplit(url)
    # API Gateway (payload 2.0) joins the values of a repeated parameter with commas.
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    try:
        text, b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, b64 = base64.b64encode(body).decode(), True
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": route_key or f"{method} {parts.path}",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": {k.lower(): v for k, v in (headers or {}).items()},
        "queryStringParameters": query or None,
        "pathParameters": dict(path_params) if path_params else None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "http": {
                "method": method,
                "path": parts.path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": (headers or {}).get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key or f"{method} {parts.path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": text,
        "isBase64Encoded": b64,
    }


def fifo_message(body: str, group: str = "g", sequence: int = 1) -> dict[str, Any]:
    """One FIFO message as ReceiveMessage returns it (for ``sqs_event``), with a fresh id."""
    return {
        "MessageId": str(uuid.uuid4()),
        "ReceiptHandle": "local",
        "Body": body,
        "Attributes": {"MessageGroupId": group, "SequenceNumber": str(sequence)},
    }


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """An SQS event for Lambda from ReceiveMessage results."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def http_response(result: Any) -> tuple[int, dict[str, str], bytes]:
    """Turn a handler's return value into status, headers and body, as API Gateway does."""
    if not isinstance(result, dict) or "statusCode" not in result:
        import json

        return 200, {"content-type": "application/json"}, json.dumps(result).encode()
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    return int(result["statusCode"]), {str(k): str(v) for k, v in (result.get("headers") or {}).items()}, data


def code_root() -> Path:
    return ROOT
