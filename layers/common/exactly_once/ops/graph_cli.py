"""``exactly-once graph watch|unwatch|status|resync``: the mailboxes the subscription manager keeps.

    exactly-once graph watch MAILBOX [--folder F]   watched from the manager's next run (every 5 minutes)
    exactly-once graph unwatch MAILBOX              its subscription is deleted at the manager's next run
    exactly-once graph status [--json]              per mailbox: subscription, expiry, errors, last resync
    exactly-once graph resync MAILBOX [--now]       owed a resync (the scheduled run does it), or run it here

The configuration lives in Postgres (``graph_mailboxes``); mailboxes named by the ``GraphMailboxes``
parameter are watched too. ``resync --now`` needs the Graph app's credentials (``GRAPH_CLIENT_ID``,
``GRAPH_CLIENT_SECRET`` or the app secret) and the events queue, as the scheduled function has them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from typing import Any, Protocol

from exactly_once.core.errors import ExactlyOnceError

STATUS_COLUMNS = (
    "mailbox",
    "folder",
    "source",
    "watched",
    "failures",
    "last_error",
    "next_attempt_at",
    "subscription_id",
    "client_state_id",
    "expires_at",
    "renewed_at",
    "resynced_at",
    "resynced_mails",
    "resync_wanted_at",
    "resync_in_progress",
    "resync_error",
)


class _Settings(Protocol):
    def connect(self) -> Any: ...

    def require_queue(self) -> str: ...


def add_commands(commands: Any) -> None:
    graph = commands.add_parser("graph", help="the Graph mailboxes watched, their subscriptions and resyncs")
    actions = graph.add_subparsers(dest="action", required=True)
    watch = actions.add_parser("watch", help="watch a mailbox (the manager subscribes it on its next run)")
    watch.add_argument("mailbox")
    watch.add_argument("--folder", default=None, help="default: the GraphMailFolder parameter, else inbox")
    watch.set_defaults(run=_watch)
    unwatch = actions.add_parser("unwatch", help="stop watching (the manager deletes its subscription)")
    unwatch.add_argument("mailbox")
    unwatch.set_defaults(run=_unwatch)
    status = actions.add_parser("status", help="each mailbox: subscription, expiry, errors, resyncs")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=_status)
    resync = actions.add_parser("resync", help="find missed mail by delta query (the scheduled run, or --now)")
    resync.add_argument("mailbox")
    resync.add_argument("--now", action="store_true", help="run it from here instead of the scheduled function")
    resync.set_defaults(run=_resync)


def _mailbox(value: str) -> str:
    mailbox = value.strip().lower()
    if not mailbox or "/" in mailbox or len(mailbox) > 320:
        raise ExactlyOnceError(f"not a mailbox: {value[:80]!r}")
    return mailbox


def _watch(args: argparse.Namespace, settings: _Settings) -> int:
    from exactly_once.flows.graph import mailboxes  # psycopg only once a command needs it (cli.main)

    mailbox = _mailbox(args.mailbox)
    with settings.connect() as conn:
        mailboxes.watch(conn, mailbox, args.folder or mailboxes.default_folder())
    print(f"watching {mailbox}: the subscription manager subscribes it on its next run (every 5 minutes)")
    return 0


def _unwatch(args: argparse.Namespace, settings: _Settings) -> int:
    from exactly_once.flows.graph import mailboxes

    mailbox = _mailbox(args.mailbox)
    with settings.connect() as conn:
        if not mailboxes.unwatch(conn, mailbox):
            print(f"{mailbox} is not watched")
            return 1
    print(f"{mailbox} no longer watched: its subscription is deleted on the manager's next run")
    return 0


def _status(args: argparse.Namespace, settings: _Settings) -> int:
    from exactly_once.core.queries import q

    with settings.connect() as conn:
        rows = [dict(zip(STATUS_COLUMNS, row, strict=True)) for row in conn.execute(q("graph_status"))]
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    if not rows:
        print("no mailbox watched (GraphMailboxes parameter, or `exactly-once graph watch MAILBOX`)")
    for row in rows:
        state = "watched" if row["watched"] else "unwatched"
        expiry = row["expires_at"].isoformat() if row["expires_at"] else "NO SUBSCRIPTION"
        print(f"{row['mailbox']} ({row['folder']}, {row['source']}, {state}): expires {expiry}")
        if row["failures"]:
            print(f"  {row['failures']} failures, last: {row['last_error']}; next attempt {row['next_attempt_at']}")
        resync = "in progress" if row["resync_in_progress"] else f"last {row['resynced_at'] or 'never'}"
        wanted = f", wanted since {row['resync_wanted_at']}" if row["resync_wanted_at"] else ""
        error = f", error {row['resync_error']}" if row["resync_error"] else ""
        print(f"  resync {resync} ({row['resynced_mails'] or 0} mails){wanted}{error}")
    return 0


def _resync(args: argparse.Namespace, settings: _Settings) -> int:
    from exactly_once.flows.graph import mailboxes

    mailbox = _mailbox(args.mailbox)
    with settings.connect() as conn:
        if not args.now:
            if not mailboxes.want_resync(conn, mailbox, dt.datetime.now(dt.UTC)):
                raise ExactlyOnceError(f"{mailbox} is not watched")
            print(f"resync of {mailbox} requested: the scheduled run does it within 5 minutes")
            return 0
        from exactly_once.flows.graph.resync import Resync

        os.environ.setdefault("EVENTS_QUEUE_URL", settings.require_queue())
        outcome = Resync.from_env(lambda: dt.datetime.now(dt.UTC)).resync(conn, mailbox)
    print(f"resync of {mailbox}: {outcome}")
    return 0 if outcome.startswith(("done", "paused")) else 1
