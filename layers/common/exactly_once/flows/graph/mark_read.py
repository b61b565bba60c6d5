"""Mark a ticketed mail as read in its mailbox (the Graph incident's "Mark Read"), once per mail.

Off unless ``GRAPH_MARK_READ`` is true (template parameter ``GraphMarkRead``; the app then needs the
``Mail.ReadWrite`` application permission, not only ``Mail.Read``). When on, the mail's ticket or
comment and a send-queue row (channel ``graph``, key ``graph-read:<mailbox>:<mail id>``) commit in
one transaction (``tickets.apply_mail``): no mark before the ticket, no ticket without its mark.
After the commit the row is relayed to the send queue (``send_queue.relay_committed``; the outbox
sweeper relays what a relay missed) and the send worker PATCHes ``isRead`` under the queue's claim,
so one worker at a time.

Setting ``isRead`` twice changes nothing, so the row's policy is ``at_least_once``: after a timeout
the reconciliation reads ``isRead`` back (``find``) and settles the row as sent when it is set,
else sends again. A mail deleted before the mark (404) settles the row ``failed``.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg

from exactly_once.core.errors import ConfigurationError, ProviderCallError
from exactly_once.flows.graph.client import DEFAULT_THROTTLE_SECONDS, GraphClient
from exactly_once.sends import queue as send_queue
from exactly_once.sends.channels import FindResult, Found, NotFound
from exactly_once.sends.queue import SendClaim
from exactly_once.sends.request import SendRequest
from exactly_once.sends.unipile_api import SentMessage

CHANNEL = "graph"
#: What tickets.apply_mail's statement answers for a mail it has just made a ticket or a comment of.
NEW_EFFECTS = frozenset({"ticket", "comment"})


def enabled() -> bool:
    value = os.environ.get("GRAPH_MARK_READ", "").strip().lower()
    if value not in ("true", "false", "1", "0", ""):
        raise ConfigurationError("GRAPH_MARK_READ must be true or false")
    return value in ("true", "1")


def request(mailbox: str, graph_message_id: str) -> SendRequest:
    return SendRequest(
        idempotency_key=f"graph-read:{mailbox}:{graph_message_id}",
        channel=CHANNEL,
        sender_account=mailbox,  # the FIFO group and pacing unit: Graph throttles per mailbox
        recipient=graph_message_id,
        payload={"isRead": True},
        policy="at_least_once",
    )


def enqueue(conn: psycopg.Connection[Any], mailbox: str, graph_message_id: str) -> int | None:
    """Inside the ticket's transaction: the row to relay after commit, or None when it was queued before."""
    enqueued = send_queue.enqueue(conn, request(mailbox, graph_message_id))
    return enqueued.id if enqueued.created else None


class GraphReadSender:
    """The send worker's sender for channel ``graph``: PATCH isRead, read it back to reconcile."""

    channel = CHANNEL

    def __init__(self, client: GraphClient) -> None:
        self._client = client

    @classmethod
    def from_env(cls) -> GraphReadSender:
        return cls(GraphClient.from_env())

    def send(self, claim: SendClaim) -> SentMessage:
        self._client.mark_read(claim.sender_account, claim.recipient)
        return SentMessage(message_id=claim.recipient)  # the ledger's unique id: one mark per mail

    def find(self, claim: SendClaim) -> FindResult:
        if self._client.is_read(claim.sender_account, claim.recipient):
            return Found(((claim.recipient, None),))
        return NotFound()

    def rate_limit(self, error: ProviderCallError) -> float | None:
        if error.status == 429 or (error.status == 503 and error.retry_after is not None):
            return error.retry_after or DEFAULT_THROTTLE_SECONDS
        return None
