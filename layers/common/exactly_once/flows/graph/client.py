"""Microsoft Graph: client-credentials token and the message fetch, over real HTTP."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from exactly_once.core.errors import PermanentEventError, ProviderCallError
from exactly_once.core.outbound_http import HttpClient, HttpResult
from exactly_once.core.provider_paths import segment
from exactly_once.core.secrets import get_secret

IMMUTABLE_IDS = 'IdType="ImmutableId"'
MESSAGE_FIELDS = "id,internetMessageId,conversationId,subject,from,bodyPreview,receivedDateTime,internetMessageHeaders"


# What a 429 without Retry-After is taken to ask for (Graph sends one with its 429s). A 503 is a
# throttle only when it names its wait; without one it is an outage, retried like any failure.
DEFAULT_THROTTLE_SECONDS = 30.0


class MessageGoneError(Exception):
    """The mail was deleted (or moved without immutable ids) before the worker fetched it."""


class GraphThrottledError(ProviderCallError):
    """Graph answered 429/503 for a mailbox (``called``), or did a moment ago and its wait is not over."""

    def __init__(self, mailbox: str, wait: float, *, called: bool) -> None:
        super().__init__(429, f"Graph throttles {mailbox[:64]!r} for {wait:.0f} s", retry_after=wait)
        self.mailbox = mailbox
        self.wait = wait
        self.called = called


class TokenProvider:
    """OAuth 2.0 client credentials, cached until a minute before expiry."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, scope: str, http: HttpClient) -> None:
        self._url, self._form = (
            token_url,
            {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
                "scope": scope,
            },
        )
        self._http = http
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.time() > self._expires - 60:
                data = self._http.request("POST", self._url, form=self._form).json()
                self._token = str(data["access_token"])
                self._expires = time.time() + float(data.get("expires_in", 3600))
            return self._token


@dataclass(frozen=True)
class MailMessage:
    graph_id: str
    internet_message_id: str
    conversation_id: str | None
    subject: str
    sender: str
    preview: str
    references: tuple[str, ...]  # In-Reply-To and References, the parents a reply names

    @classmethod
    def from_graph(cls, data: dict[str, Any]) -> MailMessage:
        imid = data.get("internetMessageId")
        if not isinstance(imid, str) or not imid.strip():
            raise PermanentEventError("message has no internetMessageId")
        headers = {
            str(h.get("name", "")).lower(): str(h.get("value", ""))
            for h in data.get("internetMessageHeaders") or []
            if isinstance(h, dict)
        }
        refs = [*headers.get("in-reply-to", "").split(), *headers.get("references", "").split()]
        sender = ((data.get("from") or {}).get("emailAddress") or {}).get("address") or ""
        return cls(
            graph_id=str(data.get("id") or ""),
            internet_message_id=imid.strip(),
            conversation_id=data.get("conversationId") or None,
            subject=str(data.get("subject") or "")[:500],
            sender=str(sender)[:320],
            preview=str(data.get("bodyPreview") or "")[:1000],
            references=tuple(dict.fromkeys(r for r in refs if r and r != imid.strip())),
        )


class GraphClient:
    def __init__(self, base_url: str, tokens: TokenProvider, http: HttpClient) -> None:
        self._base = base_url.rstrip("/")
        self._tokens = tokens
        self._http = http
        # Graph throttles per app and mailbox: until its Retry-After passes, that mailbox is not called
        # again from this container (the next event for it is deferred without a request).
        self._throttled_until: dict[str, float] = {}
        self.fetch_budget_s = http.worst_attempt_s + 1.0  # one attempt and the commit after it

    @classmethod
    def from_env(cls) -> GraphClient:
        tenant = os.environ.get("GRAPH_TENANT_ID", "common")
        # Empty values (the template's defaults) mean Microsoft's public endpoints.
        token_url = os.environ.get("GRAPH_TOKEN_URL") or f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
        base = os.environ.get("GRAPH_BASE_URL") or "https://graph.microsoft.com/v1.0"
        http = HttpClient(base, read_timeout=float(os.environ.get("GRAPH_TIMEOUT", "10")))
        tokens = TokenProvider(
            token_url,
            get_secret("GRAPH_CLIENT_ID"),
            get_secret("GRAPH_CLIENT_SECRET"),
            "https://graph.microsoft.com/.default",
            http,
        )
        return cls(base, tokens, http)

    def get_message(self, user_id: str, message_id: str) -> MailMessage:
        path = f"{self._message_path(user_id, message_id)}?$select={MESSAGE_FIELDS}"
        mailbox = user_id.lower()
        wait = self._throttled_until.get(mailbox, 0.0) - time.monotonic()
        if wait > 0:
            raise GraphThrottledError(mailbox, wait, called=False)
        try:
            result = self.call("GET", path)
        except ProviderCallError as exc:
            if exc.status == 404:
                raise MessageGoneError(message_id) from exc
            if exc.status == 429 or (exc.status == 503 and exc.retry_after is not None):
                wait = exc.retry_after if exc.retry_after is not None else DEFAULT_THROTTLE_SECONDS
                self._throttled_until[mailbox] = time.monotonic() + wait
                raise GraphThrottledError(mailbox, wait, called=True) from exc
            raise
        return MailMessage.from_graph(result.json())

    def mark_read(self, user_id: str, message_id: str) -> None:
        """PATCH the mail's ``isRead`` (needs Mail.ReadWrite); setting it twice changes nothing."""
        self.call("PATCH", self._message_path(user_id, message_id), {"isRead": True})

    def is_read(self, user_id: str, message_id: str) -> bool:
        return bool(self.call("GET", f"{self._message_path(user_id, message_id)}?$select=isRead").json().get("isRead"))

    @staticmethod
    def _message_path(user_id: str, message_id: str) -> str:
        return f"/users/{segment(user_id)}/messages/{segment(message_id)}"

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        idempotent: bool = True,
        headers: dict[str, str] | None = None,
    ) -> HttpResult:
        """One Graph API call; ``path`` under the API root, or a link Graph returned (absolute or not).

        Ids are asked for as immutable ids (``Prefer: IdType="ImmutableId"``): a mail moved between
        folders keeps the id its notification or delta page named.
        """
        sent = {"Authorization": f"Bearer {self._tokens.token()}", "Prefer": IMMUTABLE_IDS, **(headers or {})}
        return self._http.request(method, path, json_body=body, headers=sent, idempotent=idempotent)
