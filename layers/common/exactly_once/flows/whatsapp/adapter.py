"""WhatsApp Cloud API webhooks (Meta).

Handshake: ``GET ?hub.mode=subscribe&hub.verify_token=..&hub.challenge=..`` -> 200 text/plain
with the challenge when the token matches (constant time); anything else -> 403.
Auth: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>``, over the bytes
as received (Meta signs escaped-unicode JSON), constant time, else 401. Several app secrets may be
configured (several apps, a rotation): a body signed with any of them is authentic.
Split: every ``entry[].changes[].value`` of field ``messages`` carries ``messages[]`` (key: the
wamid) and ``statuses[]`` (key: the wamid and the status). Every other field Meta sends on the same
webhook (``message_template_status_update``, ``account_update``, ``phone_number_quality_update``, ...)
is routine traffic: one ``field:<name>`` event, keyed by the digest of the entry and the change, that
the worker records once in the event log. Meta retries for up to 7 days, so the
ingest window defaults to 8. Only HTTP 200 counts as delivered: duplicates get 200 too.
A signed body that cannot be read (bad JSON, unknown shapes) is answered 200 and carried
to the quarantine with its raw text and the reason: Meta has no API to fetch it again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from typing import Any

from exactly_once.core.errors import ConfigurationError, ForbiddenError, UnauthorizedError
from exactly_once.core.events import QUARANTINE_KIND, InboundEvent, unreadable_event
from exactly_once.core.secrets import get_secret
from exactly_once.core.settings import env_int
from exactly_once.ingest.adapters.base import Split, WebhookAdapter, secrets_equal
from exactly_once.ingest.apigw import Request, text_response

PROVIDER = "whatsapp"
SIGNATURE_HEADER = "x-hub-signature-256"
#: Meta retries for up to 7 days; one more day covers clock skew and a delivery started late.
DEFAULT_DEDUP_WINDOW_SECONDS = 8 * 24 * 3600
#: Meta's documented ceilings per POST.
MAX_UPDATES = 1000
MAX_BODY_BYTES = 3 * 1024 * 1024
#: Dedup writes in flight at once for one POST (each a DynamoDB conditional write).
DEDUP_WORKERS = 10
_MAX_CHALLENGE = 1024
#: A webhook field name as Meta spells them (``account_update``, ``message_template_status_update``).
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def app_secrets(value: str) -> tuple[str, ...]:
    """``WHATSAPP_APP_SECRET``: one app secret, or several as a JSON list or comma-separated
    (several Meta apps posting to one stack, or the old and the new secret during a rotation)."""
    text = value.strip()
    if text.startswith("["):
        try:
            listed = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"WHATSAPP_APP_SECRET is not a JSON list: {exc}") from exc
        if not isinstance(listed, list) or not all(isinstance(x, str) for x in listed):
            raise ConfigurationError("WHATSAPP_APP_SECRET must be a JSON list of strings")
        parts = [x.strip() for x in listed]
    else:
        parts = [x.strip() for x in text.split(",")]
    return tuple(x for x in parts if x)


def message_key(wamid: str) -> str:
    return f"whatsapp:msg:{wamid}"


def status_key(wamid: str, status: str) -> str:
    return f"whatsapp:status:{wamid}:{status}"


def field_key(waba_id: str, entry_time: Any, field: str, value: dict[str, Any]) -> str:
    """A routine field update has no id of its own: the digest of who, when and what.

    Meta's retry of a POST carries the same entry and change, so the same key; the same update
    sent again later (another ``entry.time``) is another event, as it is for Meta.
    """
    basis = json.dumps([waba_id, entry_time, field, value], ensure_ascii=False, sort_keys=True, default=str)
    return f"whatsapp:field:{field}:{hashlib.sha256(basis.encode('utf-8', 'surrogatepass')).hexdigest()}"


def conversation_group(phone_number_id: str, wa_id: str) -> str:
    """One FIFO group per (business number, customer): a conversation stays in order."""
    return f"whatsapp:{phone_number_id}:{wa_id}"


def signature(app_secret: str, raw_body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``raw_body``."""
    return "sha256=" + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


class WhatsAppAdapter(WebhookAdapter):
    provider = PROVIDER
    accepted_status = 200  # Meta counts only 200 as delivered
    content_types = ("application/json",)

    def __init__(
        self,
        app_secret: str | Sequence[str],
        verify_token: str,
        dedup_window_seconds: int = DEFAULT_DEDUP_WINDOW_SECONDS,
        max_updates: int = MAX_UPDATES,
    ) -> None:
        # Several app secrets: several Meta apps on one stack, or a rotation (old and new both valid).
        self._app_secrets = (app_secret,) if isinstance(app_secret, str) else tuple(app_secret)
        if not self._app_secrets or not all(self._app_secrets):
            raise ConfigurationError("WHATSAPP_APP_SECRET holds no secret")
        self._verify_token = verify_token
        self.dedup_window_seconds = dedup_window_seconds
        self.max_updates = max_updates

    @classmethod
    def from_env(cls) -> WhatsAppAdapter:
        adapter = cls(
            app_secrets(get_secret("WHATSAPP_APP_SECRET")),
            get_secret("WHATSAPP_VERIFY_TOKEN"),
            dedup_window_seconds=env_int("WHATSAPP_DEDUP_WINDOW_SECONDS", DEFAULT_DEDUP_WINDOW_SECONDS),
        )
        # Meta posts up to 3 MB; a variable of its own, since every function shares MAX_BODY_BYTES locally.
        adapter.max_body_bytes = env_int("WHATSAPP_MAX_BODY_BYTES", MAX_BODY_BYTES)
        # Meta batches up to 1000 updates per POST: their dedup writes run concurrently.
        adapter.dedup_workers = env_int("WHATSAPP_DEDUP_WORKERS", DEDUP_WORKERS)
        return adapter

    # -- handshake -------------------------------------------------------------------
    def handshake(self, request: Request) -> dict[str, Any] | None:
        if request.method != "GET":
            return None
        mode = request.query.get("hub.mode")
        token = request.query.get("hub.verify_token")
        challenge = request.query.get("hub.challenge", "")
        # Both checks always run: the answer takes as long for a wrong mode as for a wrong token.
        token_ok = secrets_equal(token, self._verify_token)
        if not (mode == "subscribe" and token_ok):
            raise ForbiddenError("hub.mode must be subscribe and hub.verify_token must match", code="verify_failed")
        if not challenge or len(challenge) > _MAX_CHALLENGE:
            raise ForbiddenError("hub.challenge must be 1 to 1024 characters", code="invalid_challenge")
        return text_response(200, challenge)

    # -- authentication --------------------------------------------------------------
    def authenticate(self, request: Request) -> None:
        given = request.header(SIGNATURE_HEADER)
        if not given:
            raise UnauthorizedError("X-Hub-Signature-256 header is missing", code="missing_signature")
        given = given.strip().lower()
        # Every secret is tried (no early exit): the answer takes as long whichever app signed.
        matches = [secrets_equal(given, signature(secret, request.raw_body)) for secret in self._app_secrets]
        if not any(matches):
            raise UnauthorizedError("X-Hub-Signature-256 does not match the body", code="invalid_signature")

    # -- split -----------------------------------------------------------------------
    def split(self, request: Request) -> Split:
        """Events per message and per status; whatever cannot be read goes to quarantine (still 200)."""
        raw = request.raw_body
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            return Split(events=[_quarantine_body(raw, f"signed body is not UTF-8 JSON: {exc}")])
        if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
            return Split(events=[_quarantine_body(raw, "signed body has no entry[] array")])
        if body.get("object") != "whatsapp_business_account":
            return Split(
                events=[_quarantine_body(raw, f"object is {body.get('object')!r}, not whatsapp_business_account")]
            )
        events: list[InboundEvent] = []
        for entry in body["entry"]:
            changes = entry.get("changes") if isinstance(entry, dict) else None
            if not isinstance(changes, list):
                events.append(_quarantine_item(entry, "entry has no changes[] array"))
                continue
            for change in changes:
                events.extend(_change_events(str(entry.get("id") or ""), entry.get("time"), change))
        updates = sum(1 for e in events if e.kind != QUARANTINE_KIND)
        if updates > self.max_updates:
            return Split(events=[_quarantine_body(raw, f"{updates} updates in one POST (Meta sends <= 1000)")])
        return Split(events=events)


def _change_events(waba_id: str, entry_time: Any, change: Any) -> list[InboundEvent]:
    if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
        return [_quarantine_item(change, "change has no value object")]
    field = change.get("field")
    if field != "messages":
        if not isinstance(field, str) or not _FIELD_NAME.fullmatch(field):
            return [_quarantine_item(change, f"change has no readable field name: {field!r}")]
        return [_field_event(waba_id, entry_time, field, change["value"])]
    value = change["value"]
    metadata = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
    phone_number_id = str(metadata.get("phone_number_id") or "")
    messages, statuses = value.get("messages"), value.get("statuses")
    if not phone_number_id or not (isinstance(messages, list) or isinstance(statuses, list)):
        return [_quarantine_item(change, "value lacks metadata.phone_number_id or messages[]/statuses[]")]
    listed = value.get("contacts")
    contacts = [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
    context = {"waba_id": waba_id, "metadata": metadata}
    events: list[InboundEvent] = []
    for message in messages if isinstance(messages, list) else []:
        events.append(_message_event(context, phone_number_id, contacts, message))
    for status in statuses if isinstance(statuses, list) else []:
        events.append(_status_event(context, phone_number_id, status))
    return events


def _message_event(
    context: dict[str, Any], phone_number_id: str, contacts: list[dict[str, Any]], message: Any
) -> InboundEvent:
    if not isinstance(message, dict) or not all(isinstance(message.get(k), str) for k in ("id", "from")):
        return _quarantine_item(message, "message lacks a string id or from")
    sender = message["from"]
    contact = next((c for c in contacts if c.get("wa_id") == sender), contacts[0] if len(contacts) == 1 else None)
    return InboundEvent(
        PROVIDER,
        message_key(message["id"]),
        conversation_group(phone_number_id, sender),
        f"message:{message.get('type') or 'unknown'}",
        {**context, "contact": contact, "message": message},
    )


def _status_event(context: dict[str, Any], phone_number_id: str, status: Any) -> InboundEvent:
    if not isinstance(status, dict) or not all(isinstance(status.get(k), str) for k in ("id", "status")):
        return _quarantine_item(status, "status lacks a string id or status")
    recipient = str(status.get("recipient_id") or status["id"])
    return InboundEvent(
        PROVIDER,
        status_key(status["id"], status["status"]),
        conversation_group(phone_number_id, recipient),
        f"status:{status['status']}",
        {**context, "status": status},
    )


def _field_event(waba_id: str, entry_time: Any, field: str, value: dict[str, Any]) -> InboundEvent:
    """Routine traffic on the webhook (template, account, quality updates): recorded, never quarantined.

    One FIFO group per (business account, field): a template's APPROVED then PAUSED stay in order.
    """
    return InboundEvent(
        PROVIDER,
        field_key(waba_id, entry_time, field, value),
        f"whatsapp:{waba_id or 'unknown'}:{field}",
        f"field:{field}",
        {"waba_id": waba_id, "time": entry_time, "field": field, "value": value},
    )


def _quarantine_item(item: Any, reason: str) -> InboundEvent:
    """One unreadable item, keyed by the digest of all of it (``events.storable`` bounds a large one's raw text)."""
    return unreadable_event(PROVIDER, json.dumps(item, ensure_ascii=False, sort_keys=True), reason)


def _quarantine_body(raw: bytes, reason: str) -> InboundEvent:
    """The whole body for the quarantine, under the digest of its bytes (a re-delivery is the same row).

    ``events.storable`` truncates a body too large to queue (Meta posts up to 3 MB)."""
    event = unreadable_event(PROVIDER, raw, reason)
    if b"\x00" not in raw:
        return event
    # Postgres text cannot hold NUL: unreadable_event shows them as U+FFFD; say so.
    return InboundEvent(
        event.provider,
        event.key,
        event.group,
        event.kind,
        {**event.payload, "reason": f"{reason} (NUL bytes shown as U+FFFD)"},
    )
