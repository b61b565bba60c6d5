"""The WhatsApp bot: the seed echo responder and loading a responder from its spec."""

from __future__ import annotations

import pytest

from exactly_once.core.errors import ConfigurationError
from exactly_once.flows.whatsapp.messages import parse_message
from exactly_once.flows.whatsapp.responders import ECHO, EchoResponder, load_responder
from tests.whatsapp_support import PHONE, text_message


def test_echo_responder_answers_like_the_seed_bot():
    bot = EchoResponder()
    message = parse_message({"metadata": {"phone_number_id": PHONE}, "message": text_message("w", "test")})
    assert bot.reply(message) == "test is working"
    blank = parse_message({"metadata": {"phone_number_id": PHONE}, "message": text_message("w", "  ")})
    assert bot.reply(blank) is None


def test_without_a_configured_responder_nobody_gets_a_reply():
    # Issue 16: the default echoed "<text> is working" to anyone who wrote to a production number
    silent = load_responder("")
    for text in ("test", "hello", "STOP"):
        message = parse_message({"metadata": {"phone_number_id": PHONE}, "message": text_message("w", text)})
        assert silent.reply(message) is None


def test_load_responder_from_a_spec():
    assert isinstance(load_responder(ECHO), EchoResponder)
    assert type(load_responder("tests.whatsapp_bots:ShoutingBot")).__name__ == "ShoutingBot"
    assert isinstance(load_responder("exactly_once.flows.whatsapp.responders:EchoResponder"), EchoResponder)
    for bad in ("no-colon", "exactly_once.nope:X", "exactly_once.flows.whatsapp.responders:load_missing", "json:dumps"):
        with pytest.raises(ConfigurationError):
            load_responder(bad)
