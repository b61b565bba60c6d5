"""WhatsApp's 24-hour customer-service window, checked before a send leaves.

Meta accepts free-form messages (text, media, interactive) only within 24 hours of the customer's
last message to that business number; after it, only an approved template (vendor guidance, PROVIDER-
FACTS section 5; Meta's answer is error 131047 "Re-engagement message"). A reply that reaches the send
worker late (retries, a backlog, an operator's replay) would be refused, and retrying it only burns
attempts. So before the call:

- a template message (``payload.message.type == "template"``) is always allowed;
- no inbound message of this customer to this number is stored (the bundle never saw the
  conversation): the send goes, and Meta's 131047 answer sends the row to review;
- the last inbound message is older than 24 h minus ``WHATSAPP_WINDOW_MARGIN_SECONDS`` (300: the
  request must arrive inside the window): the configured re-engagement template
  (``WHATSAPP_REENGAGEMENT_TEMPLATE``, the Cloud API's ``template`` object as JSON) is sent instead,
  or, without one, the row goes to review (a quarantine row says why) and no attempt is spent.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from exactly_once.core.errors import ConfigurationError, ProviderCallError
from exactly_once.core.queries import q
from exactly_once.core.settings import env_int
from exactly_once.sends.queue import SendClaim

WINDOW = timedelta(hours=24)
#: Meta's "outside the customer-service window" error code (vendor: usually with HTTP 400).
REENGAGEMENT_ERROR = 131047


@dataclass(frozen=True)
class WindowDecision:
    """``send``: the claim to send (its payload may be the template); else ``review`` says why not."""

    send: SendClaim | None
    review: str | None = None
    template: bool = False


def is_template(payload: dict[str, Any]) -> bool:
    message = payload.get("message")
    return isinstance(message, dict) and message.get("type") == "template"


def reengagement_template() -> dict[str, Any] | None:
    raw = os.environ.get("WHATSAPP_REENGAGEMENT_TEMPLATE", "").strip()
    if not raw:
        return None
    try:
        template = json.loads(raw)
    except ValueError as exc:
        raise ConfigurationError(f"WHATSAPP_REENGAGEMENT_TEMPLATE is not JSON: {exc}") from exc
    if not isinstance(template, dict) or not isinstance(template.get("name"), str):
        raise ConfigurationError("WHATSAPP_REENGAGEMENT_TEMPLATE needs a template object with a name")
    return template


def check(conn: psycopg.Connection[Any], claim: SendClaim, now: datetime | None = None) -> WindowDecision:
    """Whether ``claim`` (a WhatsApp send) may go as it is, as the re-engagement template, or not at all."""
    if is_template(claim.payload):
        return WindowDecision(claim)
    row = conn.execute(
        q("whatsapp_last_inbound"), {"phone_number_id": claim.sender_account, "wa_id": claim.recipient}
    ).fetchone()
    last: datetime | None = row[0] if row else None
    if last is None:
        return WindowDecision(claim)  # never saw the conversation: Meta decides (131047 -> review)
    margin = timedelta(seconds=env_int("WHATSAPP_WINDOW_MARGIN_SECONDS", 300))
    closes = last + WINDOW - margin
    if (now or datetime.now(UTC)) < closes:
        return WindowDecision(claim)
    template = reengagement_template()
    if template is not None:
        payload = {"message": {"type": "template", "template": template}, "replaces": claim.payload}
        return WindowDecision(replace(claim, payload=payload), template=True)
    return WindowDecision(
        None,
        review=f"outside the 24-hour customer-service window (the customer last wrote at {last.isoformat()}) and"
        " no WHATSAPP_REENGAGEMENT_TEMPLATE is configured: Meta would refuse a free-form message (131047)",
    )


def refused_outside_window(error: ProviderCallError) -> bool:
    """Meta's 131047: the window was closed (the bundle did not know the conversation, or clocks differ)."""
    try:
        body = json.loads(error.body)
    except ValueError:
        return False
    err = body.get("error") if isinstance(body, dict) else None
    return isinstance(err, dict) and err.get("code") == REENGAGEMENT_ERROR
