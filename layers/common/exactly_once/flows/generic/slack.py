"""Slack: the Events API, interactivity and slash commands.

Auth: ``X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:{ts}:{body}")>``
with ``X-Slack-Request-Timestamp`` within 5 minutes of now, both ways.
Handshake: ``url_verification`` (sent when the Request URL is saved) is signed
too: it is authenticated, then its ``challenge`` is answered. ``ssl_check`` gets a 200.
Dedup: ``event_id`` (Events API), ``trigger_id`` (interactions, slash commands),
else a digest of the body. ``X-Slack-Retry-Num`` / ``-Reason`` are kept with the
event and counted. Timing: Slack wants a 2xx within 3 s and retries 3 times
(at once, after 1 minute, after 5 minutes): the window is 1 day.
The answer is an empty 200 (Slack shows a slash command's or a modal's
response body to the user); the counts travel in the ``x-exactly-once`` header.
"""

from __future__ import annotations

from typing import Any

from exactly_once.core.errors import ConfigurationError, UnauthorizedError
from exactly_once.core.events import InboundEvent, unreadable_event
from exactly_once.core.fifo import group_id
from exactly_once.core.numbers import ascii_int
from exactly_once.core.secrets import get_secret
from exactly_once.core.settings import env_int
from exactly_once.core.telemetry import Metric, counters, logger
from exactly_once.ingest.adapters.base import Split, WebhookAdapter
from exactly_once.ingest.adapters.envelope import (
    as_dict,
    body_digest,
    form_fields,
    id_part,
    json_object,
    media_type,
)
from exactly_once.ingest.adapters.signing import (
    SYSTEM_CLOCK,
    Clock,
    check_timestamp,
    hmac_sha256,
    matches_any,
    prefixed_hex,
    require,
)
from exactly_once.ingest.apigw import Request, json_response

TOLERANCE_SECONDS = 5 * 60
FORM = "application/x-www-form-urlencoded"
#: A url_verification body is about 150 bytes; anything far larger is not one.
_MAX_HANDSHAKE_BYTES = 4096


class SlackAdapter(WebhookAdapter):
    provider = "slack"
    accepted_status = 200
    content_types = ("application/json", FORM)

    def __init__(
        self,
        signing_secret: str,
        *,
        tolerance_seconds: int = TOLERANCE_SECONDS,
        dedup_window_seconds: int = 24 * 3600,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not signing_secret:
            raise ConfigurationError("SLACK_SIGNING_SECRET is required (the app's signing secret)")
        self._key = signing_secret.encode()
        self._tolerance = tolerance_seconds
        self._clock = clock
        self.dedup_window_seconds = dedup_window_seconds

    @classmethod
    def from_env(cls) -> SlackAdapter:
        return cls(
            get_secret("SLACK_SIGNING_SECRET"),
            dedup_window_seconds=env_int("SLACK_DEDUP_WINDOW_SECONDS", 24 * 3600),
        )

    def handshake(self, request: Request) -> dict[str, Any] | None:
        if len(request.raw_body) > _MAX_HANDSHAKE_BYTES:
            return None
        media = media_type(request)
        if media == "application/json":
            body = json_object(request.raw_body)
            if body is None or body.get("type") != "url_verification":
                return None
            self.authenticate(request)  # Slack signs the challenge: answer only a signed one
            challenge = body.get("challenge")
            return json_response(200, {"challenge": challenge if isinstance(challenge, str) else ""})
        if media == FORM and form_fields(request.raw_body).get("ssl_check") == "1":
            self.authenticate(request)
            return json_response(200, {})
        return None

    def authenticate(self, request: Request) -> None:
        header = request.header("x-slack-signature")
        if not header:
            raise UnauthorizedError("X-Slack-Signature is missing", code="missing_signature")
        stamp = check_timestamp(
            request.header("x-slack-request-timestamp"),
            now=self._clock(),
            tolerance=self._tolerance,
            name="X-Slack-Request-Timestamp",
        )
        given = prefixed_hex(header.strip(), "v0=")
        signed = f"v0:{stamp}:".encode() + request.raw_body
        require(
            given is not None and matches_any([hmac_sha256(self._key, signed)], [given]),
            "X-Slack-Signature does not match",
        )

    def split(self, request: Request) -> Split:
        raw = request.raw_body
        digest = body_digest(raw)
        # JSON or form is read from the signed bytes, not the unsigned Content-Type: a replayed body with
        # another Content-Type must parse to the same event (and so the same key).
        if raw.lstrip()[:1] != b"{":
            fields = form_fields(raw)
            body = json_object(fields["payload"].encode()) if "payload" in fields else dict(fields)
        else:
            body = json_object(raw)
        if body is None:
            return Split(events=[unreadable_event("slack", raw, "unreadable body")])
        event = self._event(body, digest)
        delivery = self._delivery(request, event.key)
        if delivery:
            event.payload["_delivery"] = delivery
        return Split(events=[event])

    def _event(self, body: dict[str, Any], digest: str) -> InboundEvent:
        team = _team(body)
        inner = as_dict(body.get("event"))
        event_id = id_part(body.get("event_id"))
        if event_id is not None:
            kind = inner.get("type") or body.get("type") or "event_callback"
            channel = inner.get("channel") if isinstance(inner.get("channel"), str) else None
            group = group_id("slack", team, channel) if channel else group_id("slack", team, event_id)
            return InboundEvent("slack", f"slack:{event_id}", group, str(kind), body)
        trigger = id_part(body.get("trigger_id"))
        kind = f"command:{body.get('command')}" if "command" in body else str(body.get("type") or "unknown")
        key = f"slack:trigger:{trigger}" if trigger else f"slack:{kind}:body:{digest}"
        return InboundEvent("slack", key, group_id("slack", team, "interactive"), kind, body)

    def _delivery(self, request: Request, key: str) -> dict[str, Any]:
        """Slack's retry headers: kept with the event, counted, logged with the key."""
        retry = request.header("x-slack-retry-num")
        if retry is None:
            return {}
        reason = request.header("x-slack-retry-reason") or ""
        counters.incr("slack", Metric.PROVIDER_RETRIES)
        logger.info("slack retry received", extra={"key": key, "retry_num": retry, "retry_reason": reason})
        # Unsigned and only informative: kept when it is a number in ASCII digits, else dropped (never a 5xx).
        return {"retry_num": ascii_int(retry, max_digits=4), "retry_reason": reason[:200]}

    def accepted(self, accepted: int, duplicates: int, rejected: int) -> dict[str, Any]:
        return {
            "statusCode": 200,
            "headers": {"x-exactly-once": f"accepted={accepted};duplicates={duplicates};rejected={rejected}"},
            "body": "",
        }


def _team(body: dict[str, Any]) -> str:
    team = body.get("team_id") or body.get("team")
    if isinstance(team, dict):
        team = team.get("id")
    return str(team) if team else "unknown"
