"""``/console/api/...``: the console's JSON API over the library, one method per route.

``ConsoleApi.handle(request)`` returns (status, body) or raises: ``HttpError`` for a bad request (400,
404, 405), the library's own errors for a refused action (the handler maps them, at the edge). Reads:

    GET  overview?hours=24                     per provider and hour; quarantine, stuck rows, sends, DLQs
    GET  events?key=&provider=&outcome=&since=&until=&before_id=&limit=
    GET  trace?key=&provider=                  ops.trace.trace, as `exactly-once trace`
    GET  quarantine?status=&provider=&before_id=&limit=      and  quarantine/{id}
    GET  sends?status=review|unknown&before_id=&limit=       and  sends/{id}
    GET  jobs?after_user=&limit=               mailbox users, their latest job
    GET  graph                                 Graph mailboxes: subscription expiry, last renewal, resync
    GET  dlq?limit=                            the events DLQ, a look (`exactly-once dlq list`)
    GET  metrics?hours=24&provider=            per provider and period: accepted, stopped per layer (CloudWatch)

Actions (POST, JSON body, ``Idempotency-Key`` header, ``operator`` in the body, as the CLI's ``--by``):

    quarantine/{id}/resolve {note}     quarantine/{id}/replay {note, force, payload}
    dlq/replay {note, limit}           (`exactly-once dlq replay`)
    sends/{id}/resolve {decision, note, provider_message_id}     jobs/{user_id}/trigger {}
    graph/{mailbox}/resync {}
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from exactly_once.core.errors import BadRequestError, ConfigurationError, HttpError
from exactly_once.ingest.apigw import Request
from exactly_once.ops.console import actions, metrics, views
from exactly_once.ops.console.redact import redact

PREFIX = "/console/api/"
MAX_LIMIT = 200
MAX_TEXT = 2000
MAX_DLQ = 50
MAX_PAYLOAD = 100_000
PROVIDER = re.compile(r"^[a-z0-9_-]{1,40}$")
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{8,200}$")
QUARANTINE_STATUSES = ("open", "replayed", "resolved", "all")


class NotFoundError(HttpError):
    """No such route or row."""

    def __init__(self, message: str) -> None:
        super().__init__(404, "not_found", message)


class MethodNotAllowedError(HttpError):
    """The route exists, for another method."""

    def __init__(self, method: str) -> None:
        super().__init__(405, "method_not_allowed", f"{method} is not allowed here")


@dataclass(frozen=True)
class ConsoleSettings:
    """Where the queues and the ingest table are (the handler's environment, read once at init)."""

    events_queue_url: str | None = None
    events_dlq_url: str | None = None
    send_dlq_url: str | None = None
    jobs_queue_url: str | None = None
    jobs_dlq_url: str | None = None
    idempotency_table: str | None = None

    @classmethod
    def from_env(cls) -> ConsoleSettings:
        get = os.environ.get
        return cls(
            get("EVENTS_QUEUE_URL"),
            get("EVENTS_DLQ_URL"),
            get("SEND_DLQ_URL"),
            get("JOBS_QUEUE_URL"),
            get("JOBS_DLQ_URL"),
            get("IDEMPOTENCY_TABLE"),
        )


Answer = tuple[int, dict[str, Any]]


class ConsoleApi:
    def __init__(
        self,
        connection: Callable[[], psycopg.Connection[Any]],
        settings: ConsoleSettings,
        *,
        sqs: Callable[[], Any],
        dynamodb: Callable[[], Any] | None = None,
        cloudwatch: Callable[[], Any] | None = None,
        secrets: Callable[[], list[str]] = lambda: [],
    ) -> None:
        self.connection = connection
        self.settings = settings
        self.sqs = sqs
        self.dynamodb = dynamodb
        self.cloudwatch = cloudwatch
        self.secrets = secrets

    def handle(self, request: Request) -> Answer:
        if not request.path.startswith(PREFIX):
            raise NotFoundError(f"no console route {request.path}")
        parts = [p for p in request.path[len(PREFIX) :].split("/") if p]
        status, body = self._route(request, parts)
        return status, redact(_jsonable(body), self.secrets())

    def _route(self, request: Request, parts: list[str]) -> Answer:
        method = request.method
        match parts:
            case ["overview"] if method == "GET":
                return self.overview(request.query)
            case ["metrics"] if method == "GET":
                hours = _int(request.query, "hours", 24, 1, metrics.MAX_HOURS)
                return 200, metrics.per_layer(self.cloudwatch, hours=hours, provider=_provider(request.query))
            case ["events"] if method == "GET":
                return self.events(request.query)
            case ["trace"] if method == "GET":
                return self.trace(request.query)
            case ["quarantine"] if method == "GET":
                return self.quarantine_list(request.query)
            case ["quarantine", qid] if method == "GET":
                return self.quarantine_show(_id(qid))
            case ["sends"] if method == "GET":
                return self.sends(request.query)
            case ["sends", sid] if method == "GET":
                return self.send_show(_id(sid))
            case ["jobs"] if method == "GET":
                return self.jobs(request.query)
            case ["graph"] if method == "GET":
                return 200, {"items": views.graph_subscriptions(self.connection()), "next": None}
            case ["quarantine", qid, "resolve" | "replay" as verb] if method == "POST":
                return self.act(request, f"quarantine.{verb}", str(_id(qid)))
            case ["sends", sid, "resolve"] if method == "POST":
                return self.act(request, "send.resolve", str(_id(sid)))
            case ["jobs", user_id, "trigger"] if method == "POST":
                return self.act(request, "job.trigger", _text(user_id, "user_id", 200))
            case ["graph", mailbox, "resync"] if method == "POST":
                return self.act(request, "graph.resync", _text(mailbox, "mailbox", 320).lower())
            case ["dlq"] if method == "GET":
                limit = _int(request.query, "limit", 10, 1, MAX_DLQ)
                letters = views.dead_letters(self.sqs(), self._dlq(), limit=limit, longest_body=MAX_TEXT)
                return 200, {"items": letters, "next": None}
            case ["dlq", "replay"] if method == "POST":
                return self.act(request, "dlq.replay", "events")
            case ["overview" | "metrics" | "events" | "trace" | "quarantine" | "sends" | "jobs" | "graph" | "dlq", *_]:
                raise MethodNotAllowedError(method)
        raise NotFoundError(f"no console route {request.path}")

    # -- reads ------------------------------------------------------------------------------------

    def overview(self, query: Mapping[str, str]) -> Answer:
        hours = _int(query, "hours", 24, 1, 24 * 14)
        s = self.settings
        depths: dict[str, int | None] = {}
        if any((s.events_dlq_url, s.send_dlq_url, s.jobs_dlq_url)):
            sqs = self.sqs()
            depths = {
                name: views.queue_depth(sqs, url)
                for name, url in (("events", s.events_dlq_url), ("sends", s.send_dlq_url), ("jobs", s.jobs_dlq_url))
                if url
            }
        return 200, views.overview(self.connection(), hours=hours, queue_depths=depths)

    def events(self, query: Mapping[str, str]) -> Answer:
        limit = _int(query, "limit", 50, 1, MAX_LIMIT)
        found = views.search_events(
            self.connection(),
            key=_optional(query, "key", 1000),
            provider=_provider(query),
            outcome=_optional(query, "outcome", 200),
            since=_time(query, "since"),
            until=_time(query, "until"),
            before_id=_optional_int(query, "before_id"),
            limit=limit,
        )
        return 200, _page(found, limit, "id")

    def trace(self, query: Mapping[str, str]) -> Answer:
        from exactly_once.ops import trace

        key = _optional(query, "key", 1000)
        if not key:
            raise BadRequestError("key is required", code="missing_key")
        table = self.settings.idempotency_table
        dynamodb = self.dynamodb() if table and self.dynamodb is not None else None
        result = trace.trace(
            self.connection(), key, provider=_provider(query), dynamodb=dynamodb, idempotency_table=table
        )
        return 200, result

    def quarantine_list(self, query: Mapping[str, str]) -> Answer:
        from exactly_once.ops import quarantine

        status = query.get("status") or "open"
        if status not in QUARANTINE_STATUSES:
            raise BadRequestError(f"status must be one of {', '.join(QUARANTINE_STATUSES)}", code="invalid_status")
        limit = _int(query, "limit", 50, 1, MAX_LIMIT)
        found = quarantine.list_rows(
            self.connection(),
            status=None if status == "all" else status,
            provider=_provider(query),
            limit=limit,
            before_id=_optional_int(query, "before_id"),
        )
        return 200, _page(found, limit, "id")

    def quarantine_show(self, quarantine_id: int) -> Answer:
        from exactly_once.ops import quarantine

        return 200, quarantine.show(self.connection(), quarantine_id)

    def sends(self, query: Mapping[str, str]) -> Answer:
        status = query.get("status") or "review"
        statuses = views.SEND_STATUSES if status == "all" else (status,)
        if not set(statuses) <= set(views.SEND_STATUSES):
            raise BadRequestError("status must be review, unknown or all", code="invalid_status")
        limit = _int(query, "limit", 50, 1, MAX_LIMIT)
        found = views.sends_waiting(
            self.connection(), statuses=statuses, before_id=_optional_int(query, "before_id"), limit=limit
        )
        return 200, _page(found, limit, "id")

    def send_show(self, send_id: int) -> Answer:
        detail = views.send_detail(self.connection(), send_id)
        if detail is None:
            raise NotFoundError(f"no send {send_id}")
        return 200, detail

    def jobs(self, query: Mapping[str, str]) -> Answer:
        limit = _int(query, "limit", 50, 1, MAX_LIMIT)
        found = views.mailbox_users(self.connection(), after_user=_optional(query, "after_user", 200), limit=limit)
        return 200, _page(found, limit, "user_id", cursor="after_user")

    def _dlq(self) -> str:
        if not self.settings.events_dlq_url:
            raise ConfigurationError("EVENTS_DLQ_URL is not set: the console cannot read the dead-letter queue")
        return self.settings.events_dlq_url

    def _events_queue(self) -> str:
        if not self.settings.events_queue_url:
            raise ConfigurationError("EVENTS_QUEUE_URL is not set: the console cannot replay")
        return self.settings.events_queue_url

    # -- actions ----------------------------------------------------------------------------------

    def act(self, request: Request, action: str, target: str) -> Answer:
        key = request.header("idempotency-key") or ""
        if not IDEMPOTENCY_KEY.match(key):
            raise BadRequestError(
                "an Idempotency-Key header of 8 to 200 letters, digits or ._:- is required",
                code="missing_idempotency_key",
            )
        body = request.json() if request.raw_body.strip() else {}
        if not isinstance(body, dict):
            raise BadRequestError("the body must be a JSON object", code="invalid_body")
        by = _text(body.get("operator"), "operator", 200)
        conn = self.connection()
        answer, first = actions.once(
            conn,
            key,
            action=action,
            target=target,
            body=body,
            by=by,
            run=lambda: self._run(conn, action, target, body, by),
        )
        return 200, {**answer, "repeated": not first}

    def _run(
        self, conn: psycopg.Connection[Any], action: str, target: str, body: dict[str, Any], by: str
    ) -> dict[str, Any]:
        if action == "quarantine.resolve":
            return actions.resolve_quarantine(conn, int(target), by=by, note=_text(body.get("note"), "note", MAX_TEXT))
        if action == "quarantine.replay":
            queue = self._events_queue()
            note = _optional_text(body.get("note"), "note", MAX_TEXT)
            force = body.get("force", False)
            if not isinstance(force, bool):
                raise BadRequestError("force must be true or false", code="invalid_force")
            payload = actions.corrected_payload(body.get("payload"), MAX_PAYLOAD)
            return actions.replay_quarantine(
                conn, self.sqs(), queue, int(target), by=by, note=note, force=force, payload=payload
            )
        if action == "dlq.replay":
            limit = body.get("limit", 10)
            if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_DLQ:
                raise BadRequestError(f"limit must be a whole number from 1 to {MAX_DLQ}", code="invalid_limit")
            note = _optional_text(body.get("note"), "note", MAX_TEXT)
            return actions.replay_dead_letters(
                conn, self.sqs(), self._dlq(), self._events_queue(), by=by, note=note, limit=limit
            )
        if action == "send.resolve":
            decision = body.get("decision")
            if decision not in ("sent", "resend", "drop"):
                raise BadRequestError("decision must be sent, resend or drop", code="invalid_decision")
            message_id = _optional_text(body.get("provider_message_id"), "provider_message_id", 500)
            if decision == "sent" and not message_id:
                raise BadRequestError(
                    "a send resolved as sent needs the provider's message id", code="missing_message_id"
                )
            note = _text(body.get("note"), "note", MAX_TEXT)
            return actions.resolve_send(conn, int(target), decision, by=by, note=note, provider_message_id=message_id)
        if action == "graph.resync":
            return actions.graph_resync(conn, target)
        jobs = self.settings.jobs_queue_url
        if not jobs:
            raise ConfigurationError("JOBS_QUEUE_URL is not set: the console cannot trigger jobs")
        return actions.trigger_job(conn, self.sqs(), jobs, target)


# -- parameters -----------------------------------------------------------------------------------


def _page(found: list[dict[str, Any]], limit: int, field: str, cursor: str = "before_id") -> dict[str, Any]:
    """A page of rows and the cursor of the next one (None on the last page)."""
    following = found[-1][field] if len(found) == limit and found else None
    return {"items": found, "next": None if following is None else {cursor: following}}


def _id(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise BadRequestError(f"{text[:40]!r} is not an id", code="invalid_id")
    return int(text)


def _int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequestError(f"{name} must be a whole number from {low} to {high}", code=f"invalid_{name}")
    return int(raw)


def _optional_int(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    return None if not raw else _id(raw)


def _optional(query: Mapping[str, str], name: str, longest: int) -> str | None:
    raw = (query.get(name) or "").strip()
    if len(raw) > longest:
        raise BadRequestError(f"{name} is longer than {longest} characters", code=f"invalid_{name}")
    return raw or None


def _provider(query: Mapping[str, str]) -> str | None:
    raw = _optional(query, "provider", 40)
    if raw is not None and not PROVIDER.match(raw):
        raise BadRequestError("provider is a lower-case name like graph or whatsapp", code="invalid_provider")
    return raw


def _time(query: Mapping[str, str], name: str) -> dt.datetime | None:
    raw = _optional(query, name, 40)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequestError(f"{name} must be an ISO 8601 time", code=f"invalid_{name}") from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _text(value: Any, name: str, longest: int) -> str:
    text = _optional_text(value, name, longest)
    if not text:
        raise BadRequestError(f"{name} is required", code=f"missing_{name}")
    return text


def _optional_text(value: Any, name: str, longest: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequestError(f"{name} must be a string", code=f"invalid_{name}")
    text = value.strip()
    if len(text) > longest:
        raise BadRequestError(f"{name} is longer than {longest} characters", code=f"invalid_{name}")
    return text or None


def _jsonable(value: Any) -> Any:
    """Times as ISO 8601 (the page parses them), the rest as JSON has it."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
