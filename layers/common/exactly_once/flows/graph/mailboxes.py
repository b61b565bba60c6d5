"""The watched mailboxes and their subscriptions in Postgres (``sql/graph_subscriptions.sql``).

A mailbox is claimed (a token and a lease) by whoever changes its subscription, a manager run or a
lifecycle action, so two of them never create two subscriptions for one mailbox; every write of the
holder is fenced on its token. A holder that dies leaves a lease that runs out.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from exactly_once.core.queries import q

CLAIM_LEASE = dt.timedelta(seconds=120)  # longer than a claim's few Graph calls (10 s timeouts each)


@dataclass(frozen=True)
class Claim:
    mailbox: str
    folder: str
    watched: bool
    user_id: str | None
    failures: int
    next_attempt_at: dt.datetime | None
    token: uuid.UUID


@dataclass(frozen=True)
class Active:
    subscription_id: str
    resource: str
    client_state_id: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class Known:
    """A notification's subscription, when the bundle made it."""

    mailbox: str
    status: str
    user_id: str | None
    watched: bool


def configured_mailboxes() -> list[str]:
    """``GRAPH_MAILBOXES``: the template parameter's comma-separated addresses (lower case)."""
    raw = os.environ.get("GRAPH_MAILBOXES", "")
    return sorted({part.strip().lower() for part in raw.split(",") if part.strip()})


def default_folder() -> str:
    return os.environ.get("GRAPH_MAIL_FOLDER") or "inbox"


def watch(conn: psycopg.Connection[Any], mailbox: str, folder: str, source: str = "operator") -> None:
    conn.execute(q("graph_mailbox_watch"), {"mailbox": mailbox.lower(), "folder": folder, "source": source})


def unwatch(conn: psycopg.Connection[Any], mailbox: str) -> bool:
    return conn.execute(q("graph_mailbox_unwatch"), {"mailbox": mailbox.lower()}).fetchone() is not None


def sync_parameter(conn: psycopg.Connection[Any], mailboxes: list[str], folder: str) -> None:
    """The parameter's mailboxes are watched; the ones it named before and no longer does are not."""
    with conn.transaction():
        for mailbox in mailboxes:
            watch(conn, mailbox, folder, "parameter")
        conn.execute(q("graph_mailboxes_unwatch_parameter"), {"mailboxes": mailboxes})


def to_manage(conn: psycopg.Connection[Any]) -> list[str]:
    return [str(row[0]) for row in conn.execute(q("graph_mailboxes_to_manage"))]


def claim(conn: psycopg.Connection[Any], mailbox: str, now: dt.datetime) -> Claim | None:
    token = uuid.uuid4()
    params = {"mailbox": mailbox, "token": token, "now": now, "until": now + CLAIM_LEASE}
    row = conn.execute(q("graph_mailbox_claim"), params).fetchone()
    return None if row is None else Claim(row[0], row[1], row[2], row[3], row[4], row[5], token)


def release(conn: psycopg.Connection[Any], claim: Claim) -> None:
    conn.execute(q("graph_mailbox_release"), {"mailbox": claim.mailbox, "token": claim.token})


def succeeded(conn: psycopg.Connection[Any], claim: Claim) -> None:
    conn.execute(q("graph_mailbox_succeeded"), {"mailbox": claim.mailbox, "token": claim.token})


def set_user_id(conn: psycopg.Connection[Any], claim: Claim, user_id: str) -> None:
    conn.execute(q("graph_mailbox_user_id"), {"mailbox": claim.mailbox, "token": claim.token, "user_id": user_id})


def failed(conn: psycopg.Connection[Any], claim: Claim, error: str, now: dt.datetime) -> int:
    params = {"mailbox": claim.mailbox, "token": claim.token, "error": error[:500], "now": now}
    row = conn.execute(q("graph_mailbox_failed"), params).fetchone()
    return int(row[0]) if row else claim.failures


def active(conn: psycopg.Connection[Any], mailbox: str) -> Active | None:
    row = conn.execute(q("graph_subscription_active"), {"mailbox": mailbox}).fetchone()
    return None if row is None else Active(*row)


def known(conn: psycopg.Connection[Any], subscription_id: str) -> Known | None:
    row = conn.execute(q("graph_subscription_known"), {"subscription_id": subscription_id}).fetchone()
    return None if row is None else Known(*row)


def record_created(
    conn: psycopg.Connection[Any],
    claim: Claim,
    *,
    subscription_id: str,
    resource: str,
    client_state_id: str,
    expires_at: dt.datetime,
    now: dt.datetime,
    replaces: str | None = None,
) -> bool:
    """Store a new subscription (retiring the one it replaces) if ``claim`` still holds; False if not."""
    with conn.transaction():
        holds = conn.execute(q("graph_mailbox_holds"), {"mailbox": claim.mailbox, "token": claim.token}).fetchone()
        if holds is None:
            return False
        if replaces:
            retire(conn, replaces, "deleted", now)
        conn.execute(
            q("graph_subscription_insert"),
            {
                "subscription_id": subscription_id,
                "mailbox": claim.mailbox,
                "resource": resource,
                "client_state_id": client_state_id,
                "expires_at": expires_at,
                "now": now,
            },
        )
    return True


def renewed(conn: psycopg.Connection[Any], subscription_id: str, expires_at: dt.datetime, now: dt.datetime) -> None:
    conn.execute(
        q("graph_subscription_renewed"), {"subscription_id": subscription_id, "expires_at": expires_at, "now": now}
    )


def retire(conn: psycopg.Connection[Any], subscription_id: str, status: str, now: dt.datetime) -> bool:
    params = {"subscription_id": subscription_id, "status": status, "now": now}
    return conn.execute(q("graph_subscription_retire"), params).fetchone() is not None


def want_resync(conn: psycopg.Connection[Any], mailbox: str, now: dt.datetime) -> bool:
    return conn.execute(q("graph_resync_want"), {"mailbox": mailbox, "now": now}).fetchone() is not None


def at_risk(conn: psycopg.Connection[Any], now: dt.datetime, horizon: dt.timedelta = dt.timedelta(hours=24)) -> int:
    row = conn.execute(q("graph_subscriptions_at_risk"), {"now": now, "horizon": horizon}).fetchone()
    return int(row[0]) if row else 0
