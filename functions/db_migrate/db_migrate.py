"""Applies the schema migrations at deploy (a custom resource) or when invoked directly."""

from __future__ import annotations

from typing import Any

from exactly_once.core import db
from exactly_once.core.telemetry import logger
from exactly_once.core.tracing import traced
from exactly_once.ops import budget
from exactly_once.ops.custom_resource import respond
from exactly_once.ops.migrate import migrate


def run(properties: dict[str, Any] | None = None) -> dict[str, Any]:
    with db.connect() as conn:
        applied = migrate(conn)
        # At deploy, the stack's concurrency caps against the database's connections (ops/budget.py).
        checked = budget.check(conn, budget.Budget.from_properties(properties)) if properties else {}
    logger.info("migrations applied", extra={"applied": applied, **checked})
    return {"Applied": ",".join(applied), **checked}


@traced
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "ResponseURL" in event:
        respond(event, context, lambda: run(event.get("ResourceProperties") or {}))
        return {}
    return run()
