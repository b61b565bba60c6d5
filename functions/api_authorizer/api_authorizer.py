"""HTTP API Lambda authorizer for the operator routes: ``Authorization: Bearer <API_TOKEN>``."""

from __future__ import annotations

from typing import Any

from exactly_once.authorizer import simple_response
from exactly_once.secrets import get_secret

TOKEN = get_secret("API_TOKEN")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return simple_response(event, TOKEN)
