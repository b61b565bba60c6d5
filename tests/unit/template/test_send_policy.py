"""Every function that queues sends gets the channels' policy settings from the template, so
send_request.default_policy reads the same SendPolicy* parameters in each of them."""

from __future__ import annotations

import pytest

from devstack.template import Template
from exactly_once.sends import request as send_request

QUEUES_SENDS = {
    # POST /sends: every channel but the bundle's own (their rows name their policy)
    "SendEnqueueFunction": tuple(c for c in send_request.CHANNELS if c not in send_request.INTERNAL_CHANNELS),
    "EventWorkerFunction": ("whatsapp",),  # WhatsApp bot replies (flows/whatsapp/processor.py)
}


@pytest.mark.parametrize("function", sorted(QUEUES_SENDS))
def test_every_function_that_queues_sends_gets_the_policy_settings(function):
    env = Template.load().function_env(function)
    for channel in QUEUES_SENDS[function]:
        assert send_request.policy_variable(channel) in env, (function, channel)
