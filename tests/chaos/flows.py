"""The flows the chaos storms drive: how to deliver an event, where its effect lands, which fakes it calls."""

from __future__ import annotations

from typing import Any

from tests import generic_support as g
from tests import graph_support as gr
from tests import whatsapp_support as wa
from tests.chaos.storm import ChaosFlow


def _whatsapp(eid: str) -> tuple[bytes, dict[str, str]]:
    raw = wa.meta_bytes(wa.one_text(f"wamid.{eid}", eid))  # the reply is "<eid> is working": one key per event
    return raw, wa.headers_for(raw)


def _graph(eid: str) -> tuple[bytes, dict[str, str]]:
    return gr.body(gr.item(eid)).encode(), dict(gr.HEADERS)


def _graph_mails(stack: Any, eids: list[str]) -> None:
    for eid in eids:
        gr.add_mail(stack, eid, f"<{eid}@example.com>")


def _standard(eid: str) -> tuple[bytes, dict[str, str]]:
    body = g.sample_body("standard_webhook.json")
    return body, g.standard_headers(body, eid)


def _generic(provider: str, deliver: Any, path: str, where: str = "event_key LIKE '%%' || %(id)s") -> ChaosFlow:
    return ChaosFlow(
        provider,
        "GenericIngestFunction",
        path,
        deliver,
        f"SELECT count(*) FROM event_log WHERE provider = '{provider}' AND {where}",
        f"SELECT count(*) FROM event_log WHERE provider = '{provider}'",
        provider=provider,
    )


FLOWS = [
    ChaosFlow(
        "whatsapp",
        wa.FUNCTION,
        "/webhooks/whatsapp",
        _whatsapp,
        "SELECT count(*) FROM whatsapp_messages WHERE wamid = 'wamid.' || %(id)s",
        "SELECT count(*) FROM whatsapp_messages",
        fakes=("whatsapp.send",),
        provider="whatsapp",
    ),
    ChaosFlow(
        "graph",
        "GraphIngestFunction",
        "/webhooks/graph",
        _graph,
        # one thread: the first mail makes the ticket, the others a comment on it
        "SELECT (SELECT count(*) FROM tickets WHERE external_message_id = '<' || %(id)s || '@example.com>')"
        " + (SELECT count(*) FROM ticket_comments WHERE external_message_id = '<' || %(id)s || '@example.com>')",
        "SELECT (SELECT count(*) FROM tickets) + (SELECT count(*) FROM ticket_comments)",
        setup=_graph_mails,
        fakes=("graph.get_message",),
        provider="graph",
    ),
    ChaosFlow(
        "unipile",
        "UnipileIngestFunction",
        "/webhooks/unipile",
        lambda eid: (g.unipile_message(eid), g.unipile_headers()),
        "SELECT count(*) FROM linkedin_messages WHERE message_id = %(id)s",
        "SELECT count(*) FROM linkedin_messages",
        provider="unipile",
    ),
    _generic("standard", _standard, "/webhooks/standard/acme"),
    _generic("stripe", g.signed_stripe, "/webhooks/stripe"),
    _generic("github", g.signed_github, "/webhooks/github", "payload->>'delivery' = %(id)s"),
    _generic("slack", g.signed_slack, "/webhooks/slack"),
]
