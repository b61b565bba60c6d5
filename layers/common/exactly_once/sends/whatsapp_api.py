"""WhatsApp Cloud API send: ``POST {base}/{version}/{phone_number_id}/messages`` with a Bearer token.

Not idempotent, no idempotency key, and no API to list what was sent: a timeout is an
unknown outcome that only the delivery policy can settle (see send_reconcile).
"""

from __future__ import annotations

import os
from typing import Any

from exactly_once.core.outbound_http import HttpClient
from exactly_once.core.provider_paths import segment
from exactly_once.core.secrets import get_secret
from exactly_once.core.settings import env_int
from exactly_once.sends.unipile_api import SentMessage


class WhatsAppClient:
    def __init__(self, base_url: str, access_token: str, *, version: str = "v21.0", read_timeout: float = 10.0) -> None:
        self._version = version
        self._http = HttpClient(
            base_url, read_timeout=read_timeout, retries=2, headers={"Authorization": f"Bearer {access_token}"}
        )

    @classmethod
    def from_env(cls) -> WhatsAppClient:
        return cls(
            os.environ.get("WHATSAPP_BASE_URL", "https://graph.facebook.com"),
            get_secret("WHATSAPP_ACCESS_TOKEN"),
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
            "POST", f"/{self._version}/{segment(phone_number_id)}/messages", json_body=body, idempotent=False
        ).json()
        return SentMessage(str(data["messages"][0]["id"]))
