"""GitHub webhooks.

Auth: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>``. The signature covers the body
and nothing else: ``X-GitHub-Delivery``, ``X-GitHub-Event`` and ``X-GitHub-Hook-ID`` are unsigned, so
anyone holding one captured delivery could re-send it with fresh ones, and there is no timestamp.
Dedup: a digest of the signed bytes (``github:body:<sha256>``), so a replayed body is a duplicate
whatever headers it carries; the delivery id travels as metadata only. A redelivery (by hand or
through the API) is the same bytes: a duplicate too. Two genuinely different deliveries always differ
in their bodies (each carries its own ids, shas and timestamps).
Kind: read from the body where it tells (``ping``: ``zen`` + ``hook_id``; ``push``: ``ref``, ``before``,
``after``, ``commits``); otherwise the ``X-GitHub-Event`` header's value if it is a plain event name,
kept as ``event_header`` too: it labels the first copy to arrive and can no longer make a second event.
Body: JSON, or ``application/x-www-form-urlencoded`` with the JSON in ``payload`` (the hook's "content
type" setting); which one is read from the bytes (a JSON body starts with ``{``), not from the unsigned
Content-Type. Timing: GitHub does not retry on its own; deliveries of the last 3 days can be
redelivered: the window is 4 days.
"""

from __future__ import annotations

import re
from typing import Any

from exactly_once.core.errors import ConfigurationError, UnauthorizedError
from exactly_once.core.events import InboundEvent, unreadable_event
from exactly_once.core.fifo import group_id
from exactly_once.core.secrets import get_secret
from exactly_once.core.settings import env_int
from exactly_once.ingest.adapters.base import Split, WebhookAdapter
from exactly_once.ingest.adapters.envelope import body_digest, form_fields, id_part, json_object
from exactly_once.ingest.adapters.signing import hmac_sha256, matches_any, prefixed_hex, require
from exactly_once.ingest.apigw import Request

FORM = "application/x-www-form-urlencoded"
#: GitHub's event names are lower-case words joined by underscores (pull_request_review_comment).
_EVENT_NAME = re.compile(r"^[a-z][a-z_]{0,63}$")
_PUSH_FIELDS = frozenset({"ref", "before", "after", "commits"})


def read_body(raw: bytes) -> dict[str, Any] | None:
    """The delivery's JSON object, whichever way the hook sends it, decided by the signed bytes alone."""
    if raw.lstrip()[:1] == b"{":
        return json_object(raw)
    payload = form_fields(raw).get("payload")
    return json_object(payload.encode()) if payload else None


def event_kind(body: dict[str, Any], header: str | None) -> str:
    """``ping`` or ``push`` when the body shows it; else the header's name when it is one; else unknown."""
    if "zen" in body and "hook_id" in body:
        return "ping"
    if body.keys() >= _PUSH_FIELDS:
        return "push"
    claimed = (header or "").strip()
    return claimed if _EVENT_NAME.match(claimed) else "unknown"


class GitHubAdapter(WebhookAdapter):
    provider = "github"
    accepted_status = 200
    content_types = ("application/json", FORM)

    def __init__(self, secret: str, *, dedup_window_seconds: int = 4 * 24 * 3600) -> None:
        if not secret:
            raise ConfigurationError("GITHUB_WEBHOOK_SECRET is required (the hook's secret)")
        self._key = secret.encode()
        self.dedup_window_seconds = dedup_window_seconds

    @classmethod
    def from_env(cls) -> GitHubAdapter:
        return cls(
            get_secret("GITHUB_WEBHOOK_SECRET"),
            dedup_window_seconds=env_int("GITHUB_DEDUP_WINDOW_SECONDS", 4 * 24 * 3600),
        )

    def authenticate(self, request: Request) -> None:
        header = request.header("x-hub-signature-256")
        if not header:
            raise UnauthorizedError("X-Hub-Signature-256 is missing", code="missing_signature")
        given = prefixed_hex(header.strip(), "sha256=")
        require(
            given is not None and matches_any([hmac_sha256(self._key, request.raw_body)], [given]),
            "X-Hub-Signature-256 does not match",
        )

    def split(self, request: Request) -> Split:
        raw = request.raw_body
        key = f"github:body:{body_digest(raw)}"  # the signed bytes, never an unsigned header
        body = read_body(raw)
        if body is None:
            return Split(events=[unreadable_event("github", raw, "payload is not a JSON object", key=key)])
        delivery = id_part(request.header("x-github-delivery"))
        header = request.header("x-github-event")
        repository = body.get("repository")
        repo_name = repository.get("full_name") if isinstance(repository, dict) else None
        # One repository's deliveries in order (push after push); the rest each in a group of its own.
        group = group_id("github", repo_name) if repo_name else group_id("github", key)
        kind = event_kind(body, header)
        payload = {
            "event": kind,
            "event_header": header,  # unsigned: as received, for the record
            "delivery": delivery,  # unsigned: metadata only
            "hook_id": request.header("x-github-hook-id"),
            "body": body,
        }
        return Split(events=[InboundEvent("github", key, group, kind, payload)])
