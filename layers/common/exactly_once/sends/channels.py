"""One sender per channel: how to send a claimed row, how to read a provider's answer, and
whether (and how) the provider can tell us afterwards that a send happened.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, cast

from exactly_once.core.declaration import Part
from exactly_once.core.errors import ProviderCallError
from exactly_once.sends.queue import SendClaim
from exactly_once.sends.unipile_api import SentMessage, UnipileClient
from exactly_once.sends.whatsapp_api import WhatsAppClient

# Messages this much older than the claim cannot be this row's send (clock skew allowance).
RECONCILE_SKEW = timedelta(seconds=120)
DEFAULT_RATE_LIMIT_WAIT = 60.0

# WhatsApp Cloud API error codes that mean "slow down", not "never": throughput, spam and pair limits.
WHATSAPP_RATE_LIMIT_CODES = frozenset({4, 80007, 130429, 131048, 131056})


@dataclass(frozen=True)
class Found:
    """Messages matching the send (oldest first): the first one the ledger does not hold is ours."""

    candidates: tuple[tuple[str, datetime | None], ...]


class NotFound:
    """The provider's listing covers the window and the message is not there."""


class Unknowable:
    """The provider cannot tell (no list API, or no chat to look in)."""


FindResult = Found | NotFound | Unknowable


class Sender(Protocol):
    channel: str

    def send(self, claim: SendClaim) -> SentMessage: ...

    def find(self, claim: SendClaim) -> FindResult: ...

    def rate_limit(self, error: ProviderCallError) -> float | None:
        """Seconds to wait when the answer is a warning or a rate limit, else None."""
        ...


def _error_json(error: ProviderCallError) -> dict[str, object]:
    try:
        data = json.loads(error.body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class UnipileSender:
    channel = "unipile"

    def __init__(self, client: UnipileClient) -> None:
        self._client = client

    def send(self, claim: SendClaim) -> SentMessage:
        text = str(claim.payload.get("text") or "")
        if claim.payload.get("new_chat"):
            return self._client.start_chat(claim.sender_account, claim.recipient, text)
        return self._client.send_message(claim.recipient, text)

    def find(self, claim: SendClaim) -> FindResult:
        text = str(claim.payload.get("text") or "")
        since = claim.call_started_at - RECONCILE_SKEW
        # A first message had no chat id before the answer: look in every chat of the account with
        # that person (the chat it started, if it did), then read each as for any other send.
        chats = (
            self._client.chats_with(claim.sender_account, claim.recipient)
            if claim.payload.get("new_chat")
            else [claim.recipient]
        )
        matches = [
            (m.message_id, m.sent_at)
            for chat in chats
            for m in self._client.messages_since(chat, since)
            if m.is_sender and m.text == text and (m.sent_at is None or m.sent_at >= since)
        ]
        matches.sort(key=lambda m: m[1] or since)
        return Found(tuple(matches)) if matches else NotFound()

    def rate_limit(self, error: ProviderCallError) -> float | None:
        # LinkedIn warnings reach us through Unipile as 429, or as an error type naming a limit.
        kind = str(_error_json(error).get("type") or "").lower()
        if error.status == 429 or (400 <= error.status < 500 and ("limit" in kind or "warning" in kind)):
            return error.retry_after or DEFAULT_RATE_LIMIT_WAIT
        return None


class WhatsAppSender:
    channel = "whatsapp"

    def __init__(self, client: WhatsAppClient) -> None:
        self._client = client

    def send(self, claim: SendClaim) -> SentMessage:
        return self._client.send(claim.sender_account, claim.recipient, claim.payload)

    def find(self, claim: SendClaim) -> FindResult:
        return Unknowable()  # the Cloud API has no endpoint listing sent messages

    def rate_limit(self, error: ProviderCallError) -> float | None:
        err = _error_json(error).get("error")
        code = err.get("code") if isinstance(err, dict) else None
        if error.status == 429 or code in WHATSAPP_RATE_LIMIT_CODES:
            return error.retry_after or DEFAULT_RATE_LIMIT_WAIT
        return None


#: Senders that live in their flow's folder (this package never imports a flow): named as a flow names
#: its parts, ``module:Class.from_env``, imported on first use (``tests/unit/flows/graph/test_mark_read.py`` loads it).
FLOW_SENDERS = {"graph": Part("exactly_once.flows.graph", "mark_read:GraphReadSender.from_env")}


@functools.cache
def sender(channel: str) -> Sender:
    """The channel's sender, built on first use (a worker pays only for the channels it meets)."""
    if channel == "unipile":
        return UnipileSender(UnipileClient.from_env())
    if channel == "whatsapp":
        return WhatsAppSender(WhatsAppClient.from_env())
    if channel == "forward":
        from exactly_once.sends.forward import ForwardSender  # it imports this module: here, not at the top

        return ForwardSender.from_env()
    if channel in FLOW_SENDERS:
        return cast(Sender, FLOW_SENDERS[channel].load()())
    raise ValueError(f"no sender for channel {channel!r}")
