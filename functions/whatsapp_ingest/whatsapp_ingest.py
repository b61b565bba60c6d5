"""GET and POST /webhooks/whatsapp: the WhatsApp Cloud API verification handshake and webhooks.

The adapter brings its own body limit (Meta posts up to 3 MB) and dedup concurrency (up to 1000
updates per POST): ``WhatsAppAdapter.from_env``.
"""

from __future__ import annotations

from typing import Any

from exactly_once.core.telemetry import logger
from exactly_once.core.tracing import traced
from exactly_once.flows.whatsapp.adapter import WhatsAppAdapter
from exactly_once.ingest.build import webhook_ingest

INGEST = webhook_ingest(WhatsAppAdapter.from_env())


@traced
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return INGEST.handle(event, context)
