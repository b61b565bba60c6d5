"""Mark-as-read: its switch, its send request, its sender's reading of Graph's answers (unit, no network)."""

from __future__ import annotations

import pytest

from exactly_once.core.errors import ConfigurationError, ProviderCallError
from exactly_once.flows.graph import mark_read
from exactly_once.flows.graph.client import DEFAULT_THROTTLE_SECONDS
from exactly_once.sends import pacing
from exactly_once.sends.channels import FLOW_SENDERS


@pytest.mark.parametrize(("value", "on"), [("true", True), ("TRUE", True), ("1", True), ("false", False), ("", False)])
def test_the_switch_reads_true_or_false(monkeypatch, value, on):
    monkeypatch.setenv("GRAPH_MARK_READ", value)
    assert mark_read.enabled() is on


def test_anything_else_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("GRAPH_MARK_READ", "yes please")
    with pytest.raises(ConfigurationError):
        mark_read.enabled()


def test_one_key_per_mail_at_least_once_grouped_by_mailbox():
    req = mark_read.request("desk@contoso.com", "AAMk=")
    req.validate()
    assert (req.idempotency_key, req.channel, req.sender_account, req.recipient) == (
        "graph-read:desk@contoso.com:AAMk=",
        "graph",
        "desk@contoso.com",
        "AAMk=",
    )
    assert req.policy == "at_least_once" and req.payload == {"isRead": True}


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(429, 5.0, 5.0), (429, None, DEFAULT_THROTTLE_SECONDS), (503, 2.0, 2.0), (503, None, None), (404, None, None)],
)
def test_throttles_wait_and_other_answers_do_not(status, retry_after, expected):
    sender = mark_read.GraphReadSender(client=None)  # type: ignore[arg-type]  # rate_limit() never calls it
    assert sender.rate_limit(ProviderCallError(status, "x", retry_after=retry_after)) == expected


def test_the_send_worker_finds_the_graph_sender_by_name():
    assert FLOW_SENDERS["graph"].load() == mark_read.GraphReadSender.from_env


def test_the_legacy_pacing_variables_leave_the_internal_channels_alone(monkeypatch):
    monkeypatch.setenv("SEND_DAILY_CAP", "5")
    monkeypatch.setenv("SEND_MIN_SPACING_MS", "60000")
    assert pacing.defaults("graph") == pacing.DEFAULTS["graph"]
    assert pacing.defaults("whatsapp").daily_cap == 5
