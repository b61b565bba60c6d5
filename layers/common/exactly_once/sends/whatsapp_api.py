"""WhatsApp Cloud API send: ``POST {base}/{version}/{phone_number_id}/messages`` with a Bearer token.

Each business number sends with its own token when ``WHATSAPP_ACCESS_TOKEN`` maps numbers to
tokens (several businesses on one stack). Not idempotent, no idempotency key, and no API to list
what was sent: a timeout is an unknown outcome that only the delivery policy can settle (see send_reconcile).
"""

from __future__ import annotations

import json
import os
from typing import Any

from exactly_once.core.errors import ConfigurationError
from exactly_once.core.outbound_http import HttpClient
from exactly_once.core.provider_paths import segment
from exactly_once.core.secrets import get_secret
from exactly_once.core.settings import env_int
from exactly_once.sends.unipile_api import SentMessage


def access_tokens(value: str) -> dict[str, str]:
    """``WHATSAPP_ACCESS_TOKEN``: one token for every number, or a JSON object of tokens by
    ``phone_number_id`` (several businesses on one stack), ``"*"`` for the numbers not named."""
    text = value.strip()
    if not text.startswith("{"):
        return {"*": text}
    try:
        tokens = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"WHATSAPP_ACCESS_TOKEN is not a JSON object: {exc}") from exc
    if not isinstance(tokens, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tokens.items()):
        raise ConfigurationError("WHATSAPP_ACCESS_TOKEN must map phone_number_id to token")
    return dict(tokens)


class WhatsAppClient:
    def __init__(
        self, base_url: str, access_token: str | dict[str, str], *, version: str = "v21.0", read_timeout: float = 10.0
    ) -> None:
        self._version = version
        self._tokens = {"*": access_token} if isinstance(access_token, str) else dict(access_token)
        self._http = HttpClient(base_url, read_timeout=read_timeout, retries=2)

    def _token(self, phone_number_id: str) -> str:
        token = self._tokens.get(phone_number_id) or self._tokens.get("*")
        if not token:  # before any request leaves: the send surely did not happen
            raise ConfigurationError(f"no WhatsApp access token for phone number {phone_number_id}")
        return token

    @classmethod
    def from_env(cls) -> WhatsAppClient:
        return cls(
            os.environ.get("WHATSAPP_BASE_URL", "https://graph.facebook.com"),
            access_tokens(get_secret("WHATSAPP_ACCESS_TOKEN")),
            version=os.environ.get("WHATSAPP_API_VERSION", "v21.0"),
            read_timeout=float(env_int("SEND_PROVIDER_TIMEOUT_SECONDS", 10)),
        )

    def send(self, phone_number_id: str, to: str, payload: dict[str, Any]) -> SentMessage:
        """A text message (``payload["text"]``) or a message object given whole (``payload["message"]``)."""
        message = (
            dict(payload["message"])
            if isinstance(payload.get("message"), dict)
            else {
                "type": "text",
                "text": {"preview_url": False, "body": str(payload.get("text") or "")},
            }
        )
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, **message}
        data = self._http.request(
            "POST",
            f"/{self._version}/{segment(phone_number_id)}/messages",
            json_body=body,
            headers={"Authorization": f"Bearer {self._token(phone_number_id)}"},
            idempotent=False,
        ).json()
        return SentMessage(str(data["messages"][0]["id"]))
