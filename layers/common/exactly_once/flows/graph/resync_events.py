"""The events a delta resync queues: one per mail found, on the same queue and worker path as a notification.

Kind ``resync`` (an adapter never makes it: it takes only Graph's change types), keyed by mailbox and
Graph message id, so a mail found by two resyncs is one event; grouped with the mailbox's
notifications (``graph:mailbox:<mailbox>``), so one mailbox stays in order. The mail travels with the
event (the delta page carried it): the worker applies it without fetching it again. A mail already
ticketed from a live notification is a duplicate at the ticket's unique internetMessageId.
"""

from __future__ import annotations

from typing import Any

from exactly_once.core.events import InboundEvent
from exactly_once.core.fifo import group_id
from exactly_once.flows.graph.client import MailMessage

RESYNC_KIND = "resync"


def resync_event(mailbox: str, message: dict[str, Any]) -> InboundEvent:
    message_id = str(message["id"])
    payload = {"mailbox": mailbox, "resource": f"Users/{mailbox}/Messages/{message_id}", "message": message}
    return InboundEvent(
        "graph", f"graph:resync:{mailbox}|{message_id}", group_id("graph:mailbox", mailbox), RESYNC_KIND, payload
    )


def resync_mail(event: InboundEvent) -> tuple[str, MailMessage]:
    """(mailbox, mail) of a resync event; PermanentEventError when the mail lacks an internetMessageId."""
    return str(event.payload["mailbox"]).lower(), MailMessage.from_graph(dict(event.payload["message"]))
