"""Send requests: what a send is keyed and hashed by, what is refused, and the channels' policy settings."""

from __future__ import annotations

import pytest

from exactly_once.core.errors import BadRequestError
from exactly_once.sends import request as send_request
from exactly_once.sends.request import InvalidSendError, SendRequest, derive_key


def test_the_policy_variables_are_named_per_channel():
    assert [send_request.policy_variable(c) for c in ("unipile", "whatsapp")] == [
        "SEND_POLICY_UNIPILE",
        "SEND_POLICY_WHATSAPP",
    ]


def test_payload_hash_covers_channel_parties_and_payload_not_key_order():
    a = SendRequest("k", "unipile", "acc", "chat", {"text": "hi", "x": 1})
    assert a.payload_hash == SendRequest("k2", "unipile", "acc", "chat", {"x": 1, "text": "hi"}).payload_hash
    assert a.payload_hash != SendRequest("k", "unipile", "acc", "chat2", {"text": "hi", "x": 1}).payload_hash
    assert a.payload_hash != SendRequest("k", "whatsapp", "acc", "chat", {"text": "hi", "x": 1}).payload_hash


@pytest.mark.parametrize(
    "request_",
    [
        SendRequest("", "unipile", "a", "b", {"text": "t"}),
        SendRequest("k", "sms", "a", "b", {"text": "t"}),
        SendRequest("k", "unipile", "", "b", {"text": "t"}),
        SendRequest("k", "unipile", "a", "b", {}),
        SendRequest("k", "unipile", "a", "b", {"text": "t"}, policy="sometimes"),
    ],
)
def test_invalid_requests_are_refused(request_):
    with pytest.raises(InvalidSendError):
        request_.validate()


def test_derived_key_names_campaign_prospect_and_step():
    assert derive_key("c1", "p9", 2) == "campaign:c1:prospect:p9:step:2"


@pytest.mark.parametrize("channel", send_request.INTERNAL_CHANNELS)
def test_a_caller_cannot_queue_on_the_bundles_own_channels(channel):
    body = {"channel": channel, "sender_account": "a", "recipient": "b", "payload": {"x": 1}}
    with pytest.raises(BadRequestError) as refused:
        SendRequest.from_body(body, "k")
    assert refused.value.code == "internal_channel"
