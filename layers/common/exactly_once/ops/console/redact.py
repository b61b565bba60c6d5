"""Secrets out of every console answer: by the key that holds them, and by their value anywhere in a string.

Provider payloads carry shared secrets of their own (a Graph notification's ``clientState`` is the
stack's GRAPH_CLIENT_STATE), and a quarantined body is shown whole; so every answer goes through
``redact`` before it leaves the API.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
#: Keys whose values are secrets wherever they appear (JSON bodies, headers, envelopes).
SECRET_KEY = re.compile(r"client_?state|secret|password|passwd|api_?key|authorization|access_?token|signature", re.I)
#: Environment names that hold secrets locally (env.local.json puts the app secret's keys there).
SECRET_ENV = re.compile(r"SECRET|TOKEN|PASSWORD|API_KEY|CLIENT_STATE|VERIFY")
#: Shorter values would match ordinary words; every real secret here is longer.
MIN_SECRET_LENGTH = 8


def secret_values(document: dict[str, Any] | None = None) -> list[str]:
    """The values to hide: the app secret document's, and the environment's secret-named variables."""
    found: set[str] = set()
    for name, value in {**os.environ, **(document or {})}.items():
        if (document and name in document) or SECRET_ENV.search(name):
            found.update(_leaves(value))
    return sorted((v for v in found if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def _leaves(value: Any) -> Iterable[str]:
    """A secret may be a JSON object of secrets (STANDARD_WEBHOOK_SECRETS): its leaves, and itself."""
    text = str(value)
    yield text
    try:
        parsed = json.loads(text)
    except ValueError:
        return
    if isinstance(parsed, dict):
        for inner in parsed.values():
            yield from _leaves(inner)


def redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return _redact_text(value, secrets)
    if isinstance(value, dict):
        return {k: REDACTED if _secret_key(k, v) else redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, secrets) for v in value]
    return value


def _secret_key(key: Any, value: Any) -> bool:
    return isinstance(key, str) and isinstance(value, str | int) and bool(SECRET_KEY.search(key))


def _redact_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if text[:1] in "{[":
        # A JSON body as text (quarantine.raw, envelope): hide secret-named keys inside it too.
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        if isinstance(parsed, dict | list):
            cleaned = redact(parsed, secrets)
            if cleaned != parsed:
                return json.dumps(cleaned, ensure_ascii=False)
    return text
