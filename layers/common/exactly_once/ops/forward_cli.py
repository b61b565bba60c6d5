"""``exactly-once forward list|replay``: forwards the downstream endpoint never took (docs/forwarding.md).

    exactly-once forward list [--limit N] [--json]       forwards failed or in review, oldest first
    exactly-once forward replay [SEND_ID ...] --note T   back to pending, same webhook-id (all, or these)

A replayed forward goes out again with the same ``webhook-id``, so a receiver that did take it drops
the copy. Its outbox record is relayed by the send queue's sweeper (the next reaper run, every minute).
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
from typing import Any, Protocol

from exactly_once.core.display import json_text

LIST_COLUMNS = ("id", "status", "attempts", "recipient", "last_error", "status_changed_at")


class _Settings(Protocol):
    def connect(self) -> Any: ...


def add_commands(commands: Any) -> None:
    forward = commands.add_parser("forward", help="forwards the downstream endpoint did not take: list, replay")
    actions = forward.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="forwards failed or in review, oldest first")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=_list)
    replay = actions.add_parser("replay", help="send them again under the same webhook-id")
    replay.add_argument("send_ids", type=int, nargs="*", help="default: every failed or reviewed forward")
    replay.add_argument("--note", required=True, help="why (kept on each row and its quarantine row)")
    replay.add_argument("--by", help="who (default: user@host)")
    replay.set_defaults(run=_replay)


def _list(args: argparse.Namespace, settings: _Settings) -> int:
    from exactly_once.core.queries import q

    with settings.connect() as conn:
        rows = [dict(zip(LIST_COLUMNS, r, strict=True)) for r in conn.execute(q("forward_list"), {"limit": args.limit})]
    if args.json:
        print(json_text(rows, default=str))
        return 0
    if not rows:
        print("no forward failed or in review")
    for row in rows:
        print(f"{row['id']}  {row['status']}  {row['attempts']} attempts  webhook-id {row['recipient']}")
        print(f"    {row['last_error'] or ''}")
    return 0


def _replay(args: argparse.Namespace, settings: _Settings) -> int:
    from exactly_once.sends import forward  # psycopg only once a command needs it (cli.main)

    by = args.by or f"{getpass.getuser()}@{socket.gethostname()}"
    with settings.connect() as conn:
        ids = forward.replay(conn, args.send_ids or None, note=args.note, by=by)
    missing = sorted(set(args.send_ids) - set(ids))
    print(json.dumps({"replayed": ids, "not_failed_or_in_review": missing}))
    print("the send queue's sweeper relays them on its next run (every minute)")
    return 1 if missing else 0
