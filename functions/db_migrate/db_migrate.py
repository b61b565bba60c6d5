"""Applies the schema migrations at deploy (a custom resource) or when invoked directly."""

from __future__ import annotations

from typing import Any

from exactly_once.core import db
from exactly_once.core.telemetry import logger
from exactly_once.ops.custom_resource import respond
from exactly_once.ops.migrate import migrate


def run() -> dict[str, Any]:
    with db.connect() as conn:
        applied = migrate(conn)
    logger.info("migrations applied", extra={"applied": applied})
    return {"Applied": ",".join(applied)}


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "ResponseURL" in event:
        respond(event, context, run)
        return {}
    return run()
