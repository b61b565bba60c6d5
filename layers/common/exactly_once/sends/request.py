"""What a send is before it is queued: the request, its checks, its key and its delivery policy.

``SendRequest.from_body`` reads a POST /sends body (400 answers for what it cannot take);
``validate`` is what ``queue.enqueue`` checks for every caller (POST /sends, bot replies, the library).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exactly_once.core.errors import BadRequestError, ConfigurationError, ExactlyOnceError
from exactly_once.core.provider_paths import is_segment

CHANNELS = ("whatsapp", "unipile", "graph", "forward")
# Queued only by the bundle itself, never by a caller of POST /sends: "graph" marks a ticketed mail as
# read (flows/graph/mark_read.py), "forward" sends a settled event downstream (sends/forward.py).
INTERNAL_CHANNELS = ("graph", "forward")
POLICIES = ("at_most_once", "at_least_once")


class InvalidSendError(ExactlyOnceError):
    """A send request that cannot be queued (unknown channel, empty recipient, ...)."""


# What an identifier must not hold: control characters (NUL cannot even be stored) and lone surrogates.
_UNSTORABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


@dataclass(frozen=True)
class SendRequest:
    idempotency_key: str
    channel: str  # "whatsapp" | "unipile"
    sender_account: str  # WhatsApp phone_number_id / Unipile account_id: FIFO group and pacing unit
    recipient: str  # WhatsApp wa_id / Unipile chat_id (or attendee provider id with payload["new_chat"])
    payload: dict[str, Any]  # e.g. {"text": ...}
    policy: str | None = None  # at_most_once | at_least_once; None: the channel's default
    scheduled_for: datetime | None = None  # not before (None: now)

    @classmethod
    def from_body(cls, body: Any, idempotency_key: str | None = None) -> SendRequest:
        """A POST /sends body (parsed JSON) and its ``Idempotency-Key`` header; BadRequestError if malformed.

        Without the header the key is derived from ``campaign_id``, ``prospect_id`` and ``step``;
        ``text`` stands for ``payload: {"text": ...}``. ``validate`` still runs at enqueue.
        """
        if not isinstance(body, dict):
            raise BadRequestError("body must be a JSON object")
        key = idempotency_key
        if not key:
            parts = [body.get(k) for k in ("campaign_id", "prospect_id", "step")]
            if any(p in (None, "") for p in parts):
                raise BadRequestError(
                    "send an Idempotency-Key header, or campaign_id, prospect_id and step",
                    code="missing_idempotency_key",
                )
            key = derive_key(str(parts[0]), str(parts[1]), str(parts[2]))
        payload = body.get("payload")
        if payload is None and isinstance(body.get("text"), str):
            payload = {"text": body["text"]}
        fields = {k: body.get(k) for k in ("channel", "sender_account", "recipient")}
        if not all(isinstance(v, str) and v for v in fields.values()):
            raise BadRequestError("channel, sender_account and recipient are required strings")
        if not all(is_segment(str(fields[k])) for k in ("sender_account", "recipient")):
            # They go into provider URLs as path segments: '.' and '..' would be resolved to another endpoint.
            raise BadRequestError("sender_account and recipient cannot be '.' or '..'", code="invalid_id")
        if fields["channel"] in INTERNAL_CHANNELS:
            raise BadRequestError(
                f"channel {fields['channel']!r} is queued by the bundle itself, not by POST /sends",
                code="internal_channel",
            )
        if not isinstance(payload, dict):
            raise BadRequestError("payload must be an object (or give text)")
        policy = body.get("policy")
        if policy is not None and not isinstance(policy, str):
            raise BadRequestError("policy must be a string")
        return cls(
            idempotency_key=key,
            channel=str(fields["channel"]),
            sender_account=str(fields["sender_account"]),
            recipient=str(fields["recipient"]),
            payload=payload,
            policy=policy,
        )

    def validate(self) -> None:
        if not self.idempotency_key or len(self.idempotency_key) > 512:
            raise InvalidSendError("idempotency_key must be 1 to 512 characters")
        for name in ("idempotency_key", "sender_account", "recipient"):
            if _UNSTORABLE.search(getattr(self, name)):
                raise InvalidSendError(f"{name} must not hold control characters or lone surrogates")
        if self.channel not in CHANNELS:
            raise InvalidSendError(f"channel must be one of {', '.join(CHANNELS)}")
        if not self.sender_account or not self.recipient:
            raise InvalidSendError("sender_account and recipient are required")
        if not isinstance(self.payload, dict) or not self.payload:
            raise InvalidSendError("payload must be a non-empty object")
        if self.policy is not None and self.policy not in POLICIES:
            raise InvalidSendError(f"policy must be one of {', '.join(POLICIES)}")

    @property
    def payload_hash(self) -> str:
        """What a reused key must match: the channel, both parties and the payload (canonical JSON)."""
        canonical = json.dumps(
            [self.channel, self.sender_account, self.recipient, self.payload],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def policy_variable(channel: str) -> str:
    """The environment variable that sets a channel's delivery policy: SEND_POLICY_UNIPILE, SEND_POLICY_WHATSAPP."""
    return f"SEND_POLICY_{channel.upper()}"


def default_policy(channel: str) -> str:
    """A channel's delivery policy when the request names none: the ONE lookup, shared by every path
    that queues sends (POST /sends, the WhatsApp bot replies of the event worker, library callers).

    At most once for person-to-person messages unless the environment says otherwise, so every
    function that queues sends needs the ``policy_variable`` of each channel it queues for.
    """
    name = policy_variable(channel)
    policy = os.environ.get(name, "at_most_once")
    if policy not in POLICIES:
        raise ConfigurationError(f"{name} must be one of {', '.join(POLICIES)}")
    return policy


def derive_key(campaign_id: str, prospect_id: str, step: str | int) -> str:
    """The natural key of a campaign message: one send per campaign, prospect and step."""
    return f"campaign:{campaign_id}:prospect:{prospect_id}:step:{step}"
