"""Missed mail found again: a delta query per watched mailbox folder, each mail queued for the worker.

``GET /users/{mailbox}/mailFolders/{folder}/messages/delta`` from the stored delta link (the first time:
mail received in the last ``GRAPH_RESYNC_DAYS`` days), page by page (``@odata.nextLink``) until
``@odata.deltaLink``. A page's mails are queued first (``resync_events``: the same worker path as a
notification), then its link is stored, fenced on the resync's claim: a crash between the two sends
the same page again, and the ticket dedup (event log, internetMessageId) makes that a duplicate. The
delta link is stored only with the last page. A resync that stops midway (a failure, the time budget)
resumes from the stored page link; Graph refusing the link itself (410, ``syncStateNotFound``,
``resyncRequired``) restarts it from the bounded start.

Runs: after ``missed`` and ``subscriptionRemoved`` (asked for by ``lifecycle``), as a safety net
every ``GRAPH_RESYNC_EVERY_MINUTES`` (default 60), and on ``exactly-once graph resync <mailbox>``.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import psycopg

from exactly_once.core import aws, db
from exactly_once.core.crash import crashpoint
from exactly_once.core.errors import ProviderCallError, ProviderTimeoutError, QueueUnavailableError
from exactly_once.core.fifo import EventQueue
from exactly_once.core.provider_paths import segment
from exactly_once.core.queries import q
from exactly_once.core.settings import env_int
from exactly_once.core.telemetry import Metric, counters, logger
from exactly_once.flows.graph.client import IMMUTABLE_IDS, MESSAGE_FIELDS, GraphClient
from exactly_once.flows.graph.resync_events import resync_event

RESYNC_LEASE = dt.timedelta(minutes=5)  # renewed with each page
_RESTART_CODES = ("syncStateNotFound", "resyncRequired")
RemainingMs = Callable[[], int]


class Resync:
    def __init__(
        self,
        graph: GraphClient,
        queue: EventQueue,
        clock: Callable[[], dt.datetime],
        *,
        page_size: int = 50,
        first_days: int = 7,
        every: dt.timedelta = dt.timedelta(hours=1),
    ) -> None:
        self.graph, self.queue, self.clock = graph, queue, clock
        self.page_size, self.first_days, self.every = page_size, first_days, every

    @classmethod
    def from_env(cls, clock: Callable[[], dt.datetime]) -> Resync:
        return cls(
            GraphClient.from_env(),
            EventQueue(os.environ["EVENTS_QUEUE_URL"], aws.sqs()),
            clock,
            page_size=env_int("GRAPH_RESYNC_PAGE_SIZE", 50),
            first_days=env_int("GRAPH_RESYNC_DAYS", 7),
            every=dt.timedelta(minutes=env_int("GRAPH_RESYNC_EVERY_MINUTES", 60)),
        )

    def run_due(self, conn: psycopg.Connection[Any], remaining_ms: RemainingMs | None = None) -> dict[str, str]:
        """Every mailbox a resync is owed (asked for, interrupted, never run, or past the safety net)."""
        due = [str(r[0]) for r in conn.execute(q("graph_resyncs_due"), {"now": self.clock(), "every": self.every})]
        return {mailbox: self.resync(conn, mailbox, remaining_ms) for mailbox in due}

    def resync(self, conn: psycopg.Connection[Any], mailbox: str, remaining_ms: RemainingMs | None = None) -> str:
        """``done:<mails>``, ``paused:<mails>`` (out of time; resumes), ``busy``, or ``failed``."""
        started = self.clock()
        token = uuid.uuid4()
        params = {"mailbox": mailbox, "token": token, "now": started, "until": started + RESYNC_LEASE}
        row = conn.execute(q("graph_resync_claim"), params).fetchone()
        if row is None:
            return "busy"
        _, folder, _user_id, delta_link, page_link, _wanted = row
        link = page_link or delta_link or self._first_link(mailbox, folder, started)
        mails = 0
        try:
            while True:
                page = self._page(link)
                events = [resync_event(mailbox, m) for m in page.get("value") or [] if _is_mail(m)]
                if events and self.queue.send(events):
                    raise QueueUnavailableError("the events queue refused part of a resync page")
                counters.incr("graph", Metric.GRAPH_RESYNCED, len(events))
                # A crash here (queued, the link not stored) resends the page: duplicates, never a loss.
                crashpoint("graph.resync.after_page_queued")
                mails += len(events)
                next_link = page.get("@odata.nextLink")
                if not next_link:
                    self._store(
                        conn,
                        "graph_resync_done",
                        mailbox,
                        token,
                        delta_link=str(page["@odata.deltaLink"]),
                        mails=len(events),
                        started=started,
                    )
                    return f"done:{mails}"
                self._store(conn, "graph_resync_page", mailbox, token, page_link=str(next_link), mails=len(events))
                link = str(next_link)
                if remaining_ms is not None and remaining_ms() < 15_000:
                    self._release(conn, mailbox, token, restart=False, error=None)
                    return f"paused:{mails}"
        except (ProviderCallError, ProviderTimeoutError, QueueUnavailableError) as exc:
            restart = isinstance(exc, ProviderCallError) and (
                exc.status == 410 or any(code in exc.body for code in _RESTART_CODES)
            )
            error = f"HTTP {exc.status}" if isinstance(exc, ProviderCallError) else type(exc).__name__
            self._release(conn, mailbox, token, restart=restart, error=error)
            logger.warning("graph resync stopped", extra={"mailbox": mailbox, "error": error, "restart": restart})
            return "failed"

    def _first_link(self, mailbox: str, folder: str, now: dt.datetime) -> str:
        since = (now - dt.timedelta(days=self.first_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = urlencode({"$select": MESSAGE_FIELDS, "$filter": f"receivedDateTime ge {since}"}, quote_via=quote)
        return f"/users/{segment(mailbox, safe='@')}/mailFolders/{segment(folder)}/messages/delta?{query}"

    def _page(self, link: str) -> dict[str, Any]:
        prefer = f"{IMMUTABLE_IDS}, odata.maxpagesize={self.page_size}"
        data = self.graph.call("GET", link, headers={"Prefer": prefer}).json()
        if not isinstance(data, dict) or not ("@odata.nextLink" in data or "@odata.deltaLink" in data):
            raise ProviderCallError(200, "delta page without a next or delta link")
        return data

    def _store(self, conn: psycopg.Connection[Any], query: str, mailbox: str, token: uuid.UUID, **values: Any) -> None:
        now = self.clock()
        params = {"mailbox": mailbox, "token": token, "now": now, "until": now + RESYNC_LEASE, **values}
        if conn.execute(q(query), params).fetchone() is None:
            raise ProviderTimeoutError("the resync's claim was taken over; the holder resumes from the stored link")

    def _release(
        self, conn: psycopg.Connection[Any], mailbox: str, token: uuid.UUID, *, restart: bool, error: str | None
    ) -> None:
        params = {"mailbox": mailbox, "token": token, "restart": restart, "error": error}
        conn.execute(q("graph_resync_failed"), params)


def resync_mailbox(mailbox: str, after_minutes: int = 0) -> str:
    """One resync of ``mailbox`` now, on the container's connection (the CLI, the crash proofs).

    ``after_minutes`` moves the resync's clock (a proof resumes after a dead run's lease).
    """
    shift = dt.timedelta(minutes=after_minutes)
    return Resync.from_env(lambda: dt.datetime.now(dt.UTC) + shift).resync(db.connection(), mailbox.strip().lower())


def _is_mail(item: Any) -> bool:
    """A created or changed message; a removal (``@removed``) needs no ticket."""
    return isinstance(item, dict) and "@removed" not in item and bool(item.get("id"))
