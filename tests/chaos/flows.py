"""The flows the chaos storms drive: how to deliver an event, where its effect lands, which fakes it calls."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from tests import generic_support as g
from tests import graph_support as gr
from tests import livekit_support as lk
from tests import send_support as sd
from tests import whatsapp_support as wa
from tests.chaos.mailbox_flow import MAILBOX
from tests.chaos.storm import LEASE_SECONDS, ChaosFlow


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


def _livekit(eid: str) -> tuple[bytes, dict[str, str]]:
    raw = lk.encode(lk.room_event(sid=f"RM_{eid}", name=f"room-{eid}", event_id=eid))
    return raw, lk.headers(raw)


def _feedback_rows(stack: Any, eids: list[str]) -> None:
    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
        for eid in eids:
            lk.add_feedback(conn, sid=f"RM_{eid}", name=f"room-{eid}")


def _analysed_once(stack: Any, db: Any, eids: list[str], where: str, _outcome: Any) -> None:
    """docs/livekit.md: one stored analysis per room; the model asked under one claim at a time (each request
    carries feedback-<id>-<claim token>), so the keys it saw are at most the row's claims."""
    keys = stack.fakes.state["llm_idempotency_keys"]
    for eid in eids:
        fid, attempts, status, analysis = db.execute(
            "SELECT id::text, attempts, status::text, analysis FROM user_feedback WHERE room_sid = %s", (f"RM_{eid}",)
        ).fetchone()
        claims = {k for k in keys if k.startswith(f"feedback-{fid}-")}
        assert len(claims) <= attempts, f"{eid}: the model asked under {len(claims)} claims, {attempts} made {where}"
        assert (status == "completed") == (analysis is not None), f"{eid}: {status} with analysis {analysis} {where}"


def _send(eid: str) -> tuple[bytes, dict[str, str]]:
    body = sd.send_body(f"hello {eid}", chat=f"chat_{eid}", sender="acc_chaos")
    return json.dumps(body).encode(), {**sd.AUTH, "idempotency-key": eid}


def _sent_once(stack: Any, db: Any, eids: list[str], where: str, _outcome: Any) -> None:
    """One message per key at most in its chat (Unipile's list is the reconciliation's truth): a row marked
    sent is in its chat once, a row in review at most once."""
    from tests.chaos.invariants import sends_once
    from tests.chaos.storm import Outcome

    delivered = {eid: sd.delivered(stack, f"chat_{eid}", f"hello {eid}") for eid in eids}
    statuses = dict(db.execute("SELECT idempotency_key, status::text FROM send_queue").fetchall())
    wrong = {e: (statuses.get(e), n) for e, n in delivered.items() if statuses.get(e) == "sent" and n != 1}
    assert not wrong, f"sent but not in its chat once: {wrong} {where}"
    outcome = Outcome("sends", 0, len(eids))
    outcome.sends.update(statuses.values())
    sends_once(stack, db, outcome, delivered, stack.fakes.delivered("unipile.send"), where)


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
    ChaosFlow(
        "livekit",
        lk.FUNCTION,
        "/webhooks/livekit",
        _livekit,
        # the effect: the room's feedback row analysed (or, its attempts spent, failed and quarantined)
        "SELECT count(*) FROM user_feedback WHERE room_sid = 'RM_' || %(id)s AND status IN ('completed', 'failed')",
        "SELECT count(*) FROM user_feedback WHERE status IN ('completed', 'failed')",
        setup=_feedback_rows,
        fakes=("llm.chat",),
        provider="livekit",
        # a dead worker's claim lapses in the storm's time; the model's one try (LLM_TIMEOUT 1 s) fits in it
        env={"LIVEKIT_CLAIM_LEASE_SECONDS": str(LEASE_SECONDS), "LLM_RETRIES": "0"},
        open_work="SELECT count(*) FROM user_feedback WHERE status NOT IN ('completed', 'failed')",
        check=_analysed_once,
    ),
    ChaosFlow(
        "sends",
        "SendEnqueueFunction",
        "/sends",
        _send,
        "SELECT count(*) FROM send_queue WHERE idempotency_key = %(id)s",
        "SELECT count(*) FROM send_queue",
        fakes=("unipile.send", "unipile.list"),
        check=_sent_once,
    ),
    _generic("standard", _standard, "/webhooks/standard/acme"),
    _generic("stripe", g.signed_stripe, "/webhooks/stripe"),
    _generic("github", g.signed_github, "/webhooks/github", "payload->>'delivery' = %(id)s"),
    _generic("slack", g.signed_slack, "/webhooks/slack"),
    MAILBOX,
]
