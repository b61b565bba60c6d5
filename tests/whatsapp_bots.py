"""A responder loaded through WHATSAPP_RESPONDER in tests: any object with reply(message) -> str | None."""

from __future__ import annotations

from exactly_once.flows.whatsapp.messages import InboundMessage


class ShoutingBot:
    def reply(self, message: InboundMessage) -> str | None:
        return f"{message.text.upper()}!" if message.text else None
