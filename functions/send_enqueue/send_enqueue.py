"""POST /sends (ApiToken authorizer): queue a send once per idempotency key, relay it after commit.

``Idempotency-Key`` header, or derived from ``campaign_id``, ``prospect_id`` and ``step``.
201 created; 200 the existing send (same key, same payload); 409 same key, other payload;
400 invalid body; 503 the database is unavailable (nothing was queued, or the outcome is not
known: the same request again is safe, the key finds the row if it was). Every answer is JSON.
"""

from __future__ import annotations

from typing import Any

import psycopg

from exactly_once.core import db
from exactly_once.core.errors import BadRequestError, DatabaseUnavailableError, HttpError, ServiceUnavailableError
from exactly_once.core.telemetry import Metric, counters, flushes_metrics, logger
from exactly_once.core.tracing import traced
from exactly_once.ingest.apigw import Request, error_response, json_response
from exactly_once.sends import queue as send_queue
from exactly_once.sends.queue import IdempotencyConflictError
from exactly_once.sends.request import InvalidSendError, SendRequest

PROVIDER = "send_queue"


def enqueue(request: Request) -> dict[str, Any]:
    send = SendRequest.from_body(request.json(), request.header("idempotency-key"))
    try:
        conn = db.connection()
        # One statement in one transaction: a connection lost in the middle rolls it back whole.
        with conn.transaction():
            queued = send_queue.enqueue(conn, send)
    except InvalidSendError as exc:
        raise BadRequestError(str(exc), code="invalid_send") from exc
    except IdempotencyConflictError as exc:
        counters.incr(PROVIDER, Metric.REJECTED)
        return json_response(409, {"error": "idempotency_conflict", "message": str(exc), "id": exc.existing_id})
    except (psycopg.OperationalError, DatabaseUnavailableError) as exc:
        # Lost connection, server shutting down, statement cancelled: the caller may retry the
        # same request (its key), or no connection could be opened (DatabaseUnavailableError). The broken
        # connection is dropped; the next request opens one.
        db.reset()
        counters.incr(PROVIDER, Metric.REJECTED)
        logger.warning("send not queued: database unavailable", extra={"error": type(exc).__name__})
        raise ServiceUnavailableError("database unavailable", code="database_unavailable") from exc
    if queued.created:
        send_queue.relay_committed([queued.id], "send")  # committed: 201 anyway; else the sweeper relays it
        counters.incr(PROVIDER, Metric.ACCEPTED)
    else:
        counters.incr(PROVIDER, Metric.DUP_DATABASE)
    body = {
        "id": queued.id,
        "status": queued.status,
        "created": queued.created,
        "idempotency_key": send.idempotency_key,
    }
    return json_response(201 if queued.created else 200, body)


@traced
@logger.inject_lambda_context(clear_state=True)
@flushes_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        return enqueue(Request.from_apigw_v2(event))
    except HttpError as exc:
        return error_response(exc)
