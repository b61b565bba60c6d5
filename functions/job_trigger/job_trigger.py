"""POST /jobs/{user_id}/trigger (202 {job_id} or 409 {error, job_status}) and GET /jobs/{user_id}."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from exactly_once.core import aws, db
from exactly_once.core.errors import (
    BadRequestError,
    DatabaseUnavailableError,
    HttpError,
    ServiceUnavailableError,
)
from exactly_once.core.settings import env
from exactly_once.core.telemetry import flushes_metrics, logger
from exactly_once.core.tracing import traced
from exactly_once.flows.mailbox import jobs as mailbox_jobs
from exactly_once.flows.mailbox.scheduling import JobConflictError, UnknownUserError, trigger
from exactly_once.ingest.apigw import Request, error_response, json_response

JOBS_QUEUE_URL = env("JOBS_QUEUE_URL")


def _user_id(request: Request) -> str:
    # API Gateway fills pathParameters; a hand-made event may carry only the path.
    user_id = request.path_params.get("user_id")
    if not user_id:
        parts = [p for p in request.path.split("/") if p]
        user_id = parts[1] if len(parts) >= 2 and parts[0] == "jobs" else ""
    if not user_id or len(user_id) > 200:
        raise BadRequestError("user_id is missing or too long", code="invalid_user_id")
    return user_id


def _answer(request: Request) -> dict[str, Any]:
    user_id = _user_id(request)
    try:
        conn = db.connection()
        if request.method == "GET":
            current = mailbox_jobs.status(conn, user_id)
            if not current.configured:
                return json_response(404, {"error": "unknown_user", "message": f"no mailbox for user {user_id}"})
            return json_response(200, current.as_dict())
        job = trigger(conn, aws.sqs(), JOBS_QUEUE_URL, user_id, datetime.now(UTC))
    except psycopg.OperationalError as exc:
        db.reset()
        raise DatabaseUnavailableError("database unavailable", exc) from exc
    return json_response(202, {"job_id": job.job_id, "user_id": user_id, "slot": job.slot.isoformat()})


#: What a job request is refused with: the mailbox flow's and the database's errors, and the request's own.
Refusal = JobConflictError | UnknownUserError | DatabaseUnavailableError | HttpError


def refusal(exc: Refusal) -> dict[str, Any]:
    """The HTTP answer for a refused job request: the one place the mailbox flow's and the database's
    errors meet HTTP (409 with the job's status, 404, 503)."""
    if isinstance(exc, JobConflictError):
        return json_response(409, {"error": exc.code, "message": exc.message, "job_status": exc.job_status.as_dict()})
    if isinstance(exc, UnknownUserError):
        return json_response(404, {"error": exc.code, "message": exc.message})
    http = (
        ServiceUnavailableError("database unavailable", code="database_unavailable")
        if isinstance(exc, DatabaseUnavailableError)
        else exc
    )
    if http.status >= 500:
        logger.warning("job request refused", extra={"error": http.code})
    return error_response(http)


@traced
@logger.inject_lambda_context(clear_state=True)
@flushes_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        return _answer(Request.from_apigw_v2(event))
    except (JobConflictError, UnknownUserError, DatabaseUnavailableError, HttpError) as exc:
        return refusal(exc)
