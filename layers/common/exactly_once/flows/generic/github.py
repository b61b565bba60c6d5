"""GitHub webhooks.

Auth: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>``. There
is no timestamp: dedup on ``X-GitHub-Delivery`` (a GUID that a redelivery
keeps) is the replay defence, at ingest for the window and in the event log for good.
Kind: ``X-GitHub-Event`` (``ping`` when the hook is created: accepted and recorded).
Body: JSON, or ``application/x-www-form-urlencoded`` with the JSON in ``payload``
(the hook's "content type" setting); the signature covers the raw body either way.
Timing: GitHub does not retry on its own; deliveries of the last 3 days can be
redelivered by hand or through the API: the window is 4 days.
"""

from __future__ import annotations

from exactly_once.core.errors import ConfigurationError, UnauthorizedError
from exactly_once.core.events import InboundEvent, unreadable_event
from exactly_once.core.fifo import group_id
from exactly_once.core.secrets import get_secret
from exactly_once.core.settings import env_int
from exactly_once.ingest.adapters.base import Split, WebhookAdapter
from exactly_once.ingest.adapters.envelope import (
    body_digest,
    form_fields,
    id_part,
    json_object,
    media_type,
)
from exactly_once.ingest.adapters.signing import hmac_sha256, matches_any, prefixed_hex, require
from exactly_once.ingest.apigw import Request

FORM = "application/x-www-form-urlencoded"


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
        delivery = id_part(request.header("x-github-delivery"))
        kind = request.header("x-github-event") or "unknown"
        raw = request.raw_body
        body = json_object(form_fields(raw).get("payload", "").encode() if media_type(request) == FORM else raw)
        if delivery is None or body is None:
            key = f"github:{delivery}" if delivery else f"github:quarantine:{body_digest(raw)}"
            reason = "no X-GitHub-Delivery header" if delivery is None else "payload is not a JSON object"
            return Split(events=[unreadable_event("github", raw, reason, key=key)])
        repository = body.get("repository")
        repo_name = repository.get("full_name") if isinstance(repository, dict) else None
        # One repository's deliveries in order (push after push); the rest by delivery.
        group = group_id("github", repo_name) if repo_name else group_id("github", "delivery", delivery)
        payload = {
            "event": kind,
            "delivery": delivery,
            "hook_id": request.header("x-github-hook-id"),
            "body": body,
        }
        return Split(events=[InboundEvent("github", f"github:{delivery}", group, kind, payload)])
