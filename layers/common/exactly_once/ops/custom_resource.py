"""A minimal CloudFormation custom resource responder (the migration runs at deploy)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import urllib3

from exactly_once.core.telemetry import logger


def respond(event: dict[str, Any], context: Any, action: Callable[[], dict[str, Any]]) -> None:
    """Run ``action`` on Create/Update (Delete is a no-op) and report to CloudFormation."""
    status, data, reason = "SUCCESS", {}, "ok"
    try:
        if event.get("RequestType") in ("Create", "Update"):
            data = action()
    except Exception as exc:  # the boundary: CloudFormation must hear about every failure
        logger.exception("custom resource failed")
        status, reason = "FAILED", f"{type(exc).__name__}: {exc}"[:500]
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason,
            "PhysicalResourceId": event.get("PhysicalResourceId") or "exactly-once-schema",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data,
        }
    ).encode()
    urllib3.request("PUT", event["ResponseURL"], body=body, headers={"Content-Type": ""}, timeout=10.0)
