"""Pluggable bot responders: what to answer a WhatsApp message, if anything.

A responder is any object with ``reply(message) -> str | None``. ``WHATSAPP_RESPONDER``
(``"package.module:attr"``) names one: ``attr`` may be such an object, a class or a
factory taking no arguments. Without one, nobody is answered: the seed's test bot
("test" -> "test is working", ``ECHO``) answered anyone who wrote to a production number
(issue 16), so the local stack and the tests name it explicitly. It is called at most once per stored message in the
normal path; under a true race two workers may both ask it, and only one answer is sent.
"""

from __future__ import annotations

import os
from typing import Protocol, cast, runtime_checkable

from exactly_once.core.plugins import load_plugin
from exactly_once.flows.whatsapp.messages import InboundMessage


@runtime_checkable
class Responder(Protocol):
    def reply(self, message: InboundMessage) -> str | None:
        """The text to send back, or None for no reply."""


#: The seed's echo bot, as ``WHATSAPP_RESPONDER`` names it (the local stack and the tests set it).
ECHO = "exactly_once.flows.whatsapp.responders:EchoResponder"


class SilentResponder:
    """No responder configured: every message is stored, none is answered."""

    def reply(self, message: InboundMessage) -> str | None:
        return None


class EchoResponder:
    """The seed's test bot: a text message gets "<text> is working"; other types get no reply."""

    def reply(self, message: InboundMessage) -> str | None:
        if message.type != "text" or not message.text or not message.text.strip():
            return None
        return f"{message.text.strip()} is working"


def load_responder(spec: str | None = None) -> Responder:
    """The responder named by ``spec`` (default: ``WHATSAPP_RESPONDER``), else one that never replies."""
    spec = spec if spec is not None else os.environ.get("WHATSAPP_RESPONDER", "")
    if not spec.strip():
        return SilentResponder()
    return cast(Responder, load_plugin("WHATSAPP_RESPONDER", spec, Responder, "reply(message)"))
