"""Scheduled: reclaims expired claims and relays missed outbox rows (every registered reaper)."""

from __future__ import annotations

from typing import Any

from exactly_once import db
from exactly_once.reaper import run_all
from exactly_once.telemetry import logger


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    results = run_all(db.connection())
    logger.info("reapers ran", extra={"results": results})
    return results
