"""GET /console (the page) and /console/static/{file}: unauthenticated, static, harmless.
GET|POST /console/api/{proxy+}: the operator console's JSON API, behind the ApiToken authorizer.

The one place the console's library errors meet HTTP: not found 404, a refused or repeated action
409, a reused Idempotency-Key 422, the database or a queue down 503.
"""

from __future__ import annotations

import functools
from typing import Any

import psycopg

from exactly_once.core import aws, db
from exactly_once.core.errors import (
    ConfigurationError,
    DependencyUnavailableError,
    ExactlyOnceError,
    HttpError,
)
from exactly_once.core.secrets import secret_document
from exactly_once.core.telemetry import Metric, counters, flushes_metrics, logger
from exactly_once.core.tracing import traced
from exactly_once.flows.mailbox.scheduling import JobConflictError, UnknownUserError
from exactly_once.ingest.apigw import Request, json_response
from exactly_once.ops.console import ConsoleApi, ConsoleSettings, asset_response
from exactly_once.ops.console.actions import (
    ActionInProgressError,
    IdempotencyKeyReusedError,
    SendNotInReviewError,
    UnknownMailboxError,
)
from exactly_once.ops.console.redact import secret_values
from exactly_once.ops.quarantine import NotReplayableError, QuarantineNotFoundError, ReplayNotSentError


def _connection() -> psycopg.Connection[Any]:
    # Looked up per call, not bound at import: the local stack gives each thread its own connection.
    return db.connection()


def _sqs() -> Any:
    return aws.sqs()


def _dynamodb() -> Any:
    return aws.dynamodb()


@functools.cache
def _cloudwatch() -> Any:
    return aws.client("cloudwatch")


def _secrets() -> list[str]:
    """Every value of the app secret and of the secret-named environment: hidden in every answer."""
    return secret_values(secret_document())


API = ConsoleApi(
    _connection, ConsoleSettings.from_env(), sqs=_sqs, dynamodb=_dynamodb, cloudwatch=_cloudwatch, secrets=_secrets
)
NO_STORE = {"cache-control": "no-store", "x-content-type-options": "nosniff"}


def answer(exc: ExactlyOnceError) -> dict[str, Any]:
    """A library error as the console's JSON answer (never its cause's text when that could hold a secret)."""
    if isinstance(exc, HttpError):
        return _error(exc.status, exc.code, exc.message)
    if isinstance(exc, QuarantineNotFoundError | UnknownUserError | UnknownMailboxError):
        return _error(404, "not_found", str(exc))
    if isinstance(exc, NotReplayableError | SendNotInReviewError | ActionInProgressError):
        code = "in_progress" if isinstance(exc, ActionInProgressError) else "conflict"
        return _error(409, code, str(exc))
    if isinstance(exc, JobConflictError):
        return json_response(
            409, {"error": exc.code, "message": exc.message, "job_status": exc.job_status.as_dict()}, NO_STORE
        )
    if isinstance(exc, IdempotencyKeyReusedError):
        return _error(422, "idempotency_key_reused", str(exc))
    if isinstance(exc, ReplayNotSentError | DependencyUnavailableError):
        logger.warning("console action refused: a dependency is down", extra={"error": type(exc).__name__})
        return _error(503, "unavailable", "a queue or the database is unavailable; try again")
    if isinstance(exc, ConfigurationError):
        logger.error("console misconfigured", extra={"error": str(exc)})
        counters.incr("console", Metric.NOT_CONFIGURED)  # NotConfiguredAlarm
        return _error(503, "not_configured", "the console function is missing a setting (see its logs)")
    logger.exception("console: unexpected library error")
    return _error(500, "internal_error", "unexpected error (see the console function's logs)")


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return json_response(status, {"error": code, "message": message}, NO_STORE)


def _serve(event: dict[str, Any]) -> dict[str, Any]:
    request = Request.from_apigw_v2(event)
    if request.path in ("/console", "/console/"):
        page = asset_response("index.html")
        if page is not None:
            return page
    if request.path.startswith("/console/static/"):
        found = asset_response(request.path.removeprefix("/console/static/"))
        return found or _error(404, "not_found", "no such file")
    if "/console/api/" not in str(event.get("routeKey") or ""):
        # Only the API routes carry the authorizer: the page's routes never reach the API.
        return _error(404, "not_found", "no such page")
    try:
        status, body = API.handle(request)
    except psycopg.OperationalError as exc:
        db.reset()
        raise DependencyUnavailableError("database unavailable", exc) from exc
    return json_response(status, body, NO_STORE)


@traced
@logger.inject_lambda_context(clear_state=True)
@flushes_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        return _serve(event)
    except ExactlyOnceError as exc:
        return answer(exc)
