"""Unipile (LinkedIn messaging): send into a chat, start a chat, list a chat's messages.

Sends are not idempotent and Unipile takes no idempotency key: they go through
``HttpClient(idempotent=False)``, so a read timeout is a ProviderTimeoutError (unknown
outcome), never a retry. The listing is what reconciliation asks before any resend: it reads
every page back to the send (``messages_since``), since the other side's replies fill the first
page as fast as ours (issue 21: reading one page took a sent message for a lost one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from exactly_once.core.errors import ProviderCallError
from exactly_once.core.outbound_http import HttpClient
from exactly_once.core.provider_paths import segment
from exactly_once.core.secrets import get_secret
from exactly_once.core.settings import env_int


@dataclass(frozen=True)
class SentMessage:
    message_id: str
    chat_id: str | None = None


@dataclass(frozen=True)
class ChatMessage:
    message_id: str
    text: str
    is_sender: bool
    sent_at: datetime | None


class UnipileClient:
    def __init__(self, base_url: str, api_key: str, *, read_timeout: float = 10.0) -> None:
        self._http = HttpClient(
            base_url,
            read_timeout=read_timeout,
            retries=2,
            headers={"X-API-KEY": api_key, "accept": "application/json"},
        )

    @classmethod
    def from_env(cls) -> UnipileClient:
        return cls(
            os.environ.get("UNIPILE_BASE_URL", "https://api1.unipile.com:13111"),
            get_secret("UNIPILE_API_KEY"),
            read_timeout=float(env_int("SEND_PROVIDER_TIMEOUT_SECONDS", 10)),
        )

    def send_message(self, chat_id: str, text: str) -> SentMessage:
        """POST /api/v1/chats/{chat_id}/messages (multipart ``text``)."""
        data = self._http.request(
            "POST", f"/api/v1/chats/{segment(chat_id)}/messages", fields={"text": text}, idempotent=False
        ).json()
        return SentMessage(str(data["message_id"]), chat_id)

    def start_chat(self, account_id: str, attendee_id: str, text: str) -> SentMessage:
        """POST /api/v1/chats (``account_id``, ``attendees_ids``, ``text``): a first message."""
        data = self._http.request(
            "POST",
            "/api/v1/chats",
            fields={"account_id": account_id, "attendees_ids": attendee_id, "text": text},
            idempotent=False,
        ).json()
        return SentMessage(str(data["message_id"]), str(data.get("chat_id") or "") or None)

    def list_messages(self, chat_id: str, limit: int = 50) -> list[ChatMessage]:
        """GET /api/v1/chats/{chat_id}/messages: the chat's most recent messages."""
        data = self._http.request("GET", f"/api/v1/chats/{segment(chat_id)}/messages?limit={limit}").json()
        return [_message(item) for item in (data or {}).get("items", [])]

    def chats_with(self, account_id: str, attendee_id: str, *, page_size: int = 50, max_pages: int = 10) -> list[str]:
        """GET /api/v1/chat_attendees/{attendee_id}/chats?account_id=..: every chat of the account with that person.

        How a first message is found after a timeout: its chat did not exist (or was not known) before
        the send, so the chat id comes from this listing. Raises ProviderCallError when the pages do not end.
        """
        path = f"/api/v1/chat_attendees/{segment(attendee_id)}/chats"
        query = {"account_id": account_id, "limit": str(page_size)}
        chats: list[str] = []
        for _ in range(max_pages):
            data = self._http.request("GET", f"{path}?{urlencode(query)}").json() or {}
            chats += [str(item["id"]) for item in data.get("items", []) if isinstance(item, dict) and item.get("id")]
            cursor = data.get("cursor")
            if not cursor:
                return chats
            query["cursor"] = str(cursor)
        raise ProviderCallError(0, f"attendee {attendee_id}: {max_pages} pages of chats did not end")

    def messages_since(
        self, chat_id: str, since: datetime, *, page_size: int = 100, max_pages: int = 20
    ) -> list[ChatMessage]:
        """Every message of the chat, both sides, sent after ``since``: ``after`` and the cursor, page by page.

        Raises ProviderCallError when ``max_pages`` pages do not reach ``since``: a listing that
        stops short cannot say a message is absent.
        """
        path = f"/api/v1/chats/{segment(chat_id)}/messages"
        query = {"limit": str(page_size), "after": _stamp(since)}
        messages: list[ChatMessage] = []
        for _ in range(max_pages):
            data = self._http.request("GET", f"{path}?{urlencode(query)}").json() or {}
            page = [_message(item) for item in data.get("items", [])]
            messages += page
            cursor = data.get("cursor")
            # Newest first: a page reaching back past ``since`` ends it, even where ``after`` is ignored.
            if not cursor or not page or any(m.sent_at is not None and m.sent_at < since for m in page):
                return messages
            query["cursor"] = str(cursor)
        raise ProviderCallError(0, f"chat {chat_id}: {max_pages} pages of messages did not reach {_stamp(since)}")


def _stamp(at: datetime) -> str:
    """Unipile's date format: ``YYYY-MM-DDTHH:MM:SS.sssZ`` (UTC)."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _message(item: dict[str, Any]) -> ChatMessage:
    stamp = item.get("timestamp")
    sent_at = None
    if isinstance(stamp, str) and stamp:
        sent_at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return ChatMessage(
        message_id=str(item.get("id") or item.get("message_id") or ""),
        text=str(item.get("text") or ""),
        is_sender=bool(item.get("is_sender")),
        sent_at=sent_at,
    )
