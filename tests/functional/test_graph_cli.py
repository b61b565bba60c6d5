"""`exactly-once graph watch|unwatch|status|resync` on the test stack: the CLI in-process with the stack's
environment, the subscription manager and the worker as deployed, the fake Graph over HTTP."""

from __future__ import annotations

import datetime as dt
import json

from exactly_once.flows.graph.manager import SubscriptionManager
from exactly_once.ops import cli
from tests.graph_endpoint import notification_endpoint
from tests.graph_support import add_mail

BOX = "Support@Contoso.test"


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


def status(capsys) -> dict[str, dict]:
    code, out = run_cli(capsys, "graph", "status", "--json")
    assert code == 0, out
    return {row["mailbox"]: row for row in json.loads(out)}


def test_watch_then_status_then_resync_then_unwatch(stack, db, capsys, monkeypatch):
    box = BOX.lower()
    # WHEN an operator watches a mailbox, the next manager run subscribes it
    assert run_cli(capsys, "graph", "watch", BOX)[0] == 0
    assert status(capsys)[box]["subscription_id"] is None
    with notification_endpoint(stack, monkeypatch):
        assert SubscriptionManager.from_env().run(db) == {box: "created"}
        row = status(capsys)[box]
        assert (row["watched"], row["source"], row["folder"]) == (True, "operator", "inbox")
        assert row["subscription_id"] in stack.fakes.state["graph_subscriptions"]
        code, text = run_cli(capsys, "graph", "status")
        assert code == 0 and f"{box} (inbox, operator, watched): expires" in text
        # AND `resync` asks the scheduled run for one; `resync --now` runs it here and the worker tickets the mail
        assert run_cli(capsys, "graph", "resync", BOX)[0] == 0
        assert status(capsys)[box]["resync_wanted_at"] is not None
        add_mail(stack, "n1", "<n1@example.com>", user=box)
        stack.fakes.state["graph_messages"][(box, "n1")]["receivedDateTime"] = dt.datetime.now(dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        code, text = run_cli(capsys, "graph", "resync", BOX, "--now")
        assert (code, text.strip()) == (0, f"resync of {box}: done:1")
        stack.drain()
        assert db.execute("SELECT external_message_id FROM tickets").fetchall() == [("<n1@example.com>",)]
        assert status(capsys)[box]["resynced_mails"] == 1
        # WHEN it is unwatched, the next manager run deletes its subscription
        assert run_cli(capsys, "graph", "unwatch", BOX)[0] == 0
        assert run_cli(capsys, "graph", "unwatch", BOX)[0] == 1  # not watched any more
        assert SubscriptionManager.from_env().run(db) == {box: "deleted"}
    assert stack.fakes.state["graph_subscriptions"] == {}
    assert status(capsys)[box]["subscription_id"] is None


def test_a_resync_of_an_unknown_mailbox_and_a_bad_name_are_errors(stack, db, capsys):
    assert run_cli(capsys, "graph", "resync", "nobody@contoso.test")[0] == 2
    assert run_cli(capsys, "graph", "watch", "users/x/../y")[0] == 2
    assert run_cli(capsys, "graph", "status")[1].startswith("no mailbox watched")
