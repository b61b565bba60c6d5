"""OpenAI-compatible chat completions (``POST {LLM_BASE_URL}/chat/completions``) over real HTTP.

Base URL, model and key come from ``secrets.get_secret`` (the environment first, then the
stack's secret). Timeouts and retries are bounded (``LLM_TIMEOUT`` seconds per try,
``LLM_RETRIES`` retries of 429/5xx and broken connections): a worker never waits past its
claim's lease. Every request carries an ``Idempotency-Key`` derived from the caller's claim,
so a gateway or provider that honours it answers a retried request once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from exactly_once.core.errors import ProviderCallError
from exactly_once.core.outbound_http import HttpClient
from exactly_once.core.secrets import get_secret
from exactly_once.core.settings import env_int

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class ChatResult:
    content: str
    model: str
    response_id: str
    usage: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The content parsed as JSON when the model answered JSON, else wrapped as text."""
        try:
            parsed = json.loads(self.content)
        except ValueError:
            parsed = None
        return parsed if isinstance(parsed, dict) else {"text": self.content}


class LlmClient:
    def __init__(self, base_url: str, api_key: str, model: str, http: HttpClient | None = None) -> None:
        self.model = model
        self._http = http or HttpClient(base_url)
        self._auth = {"Authorization": f"Bearer {api_key}"}

    @classmethod
    def from_env(cls) -> LlmClient:
        base = get_secret("LLM_BASE_URL", required=False) or DEFAULT_BASE_URL
        http = HttpClient(
            base,
            connect_timeout=2.0,
            read_timeout=float(os.environ.get("LLM_TIMEOUT", "15")),
            retries=env_int("LLM_RETRIES", 2),
        )
        model = get_secret("LLM_MODEL", required=False) or DEFAULT_MODEL
        return cls(base, get_secret("LLM_API_KEY"), model, http)

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        idempotency_key: str,
        metadata: dict[str, str] | None = None,
        json_output: bool = True,
    ) -> ChatResult:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0}
        if json_output:
            body["response_format"] = {"type": "json_object"}
        if metadata:
            # OpenAI accepts metadata only on stored completions ("store": true); other
            # compatible servers may refuse the field, so it is sent only when asked for.
            body["metadata"] = metadata
            body["store"] = True
        # Retrying is safe for us (the result is stored under a fenced claim); what a retry costs
        # is tokens, hence the small bound.
        result = self._http.request(
            "POST",
            "/chat/completions",
            json_body=body,
            headers={**self._auth, "Idempotency-Key": idempotency_key},
            idempotent=True,
        )
        data = result.json()
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ProviderCallError(result.status, "chat completion without choices[0].message.content") from exc
        return ChatResult(
            content=str(content or ""),
            model=str(data.get("model") or self.model),
            response_id=str(data.get("id") or ""),
            usage=dict(data.get("usage") or {}),
        )
