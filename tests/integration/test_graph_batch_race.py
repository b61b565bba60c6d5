"""Batches of the same mails applied at once in different orders, and one by one beside them:
one ticket per mail, no deadlock (every lock is taken in one global order)."""

from __future__ import annotations

import random
import threading

import psycopg

from exactly_once.core.events import InboundEvent
from exactly_once.flows.graph.client import MailMessage
from exactly_once.flows.graph.tickets import apply_mail, apply_mails


def mail(run: str, n: int) -> tuple[MailMessage, InboundEvent, str]:
    message = MailMessage(
        graph_id=f"AAMk{run}{n}",
        internet_message_id=f"<{run}-{n}@race.local>",
        conversation_id=f"conv-{run}-{n % 3}",  # three threads: replies race their tickets too
        subject="Printer on fire",
        sender="alice@example.com",
        preview="Hello",
        references=(),
    )
    event = InboundEvent("graph", f"graph:{run}:{n}:{random.random()}", "g", "created", {})
    return message, event, "race@example.com"


def test_batches_in_every_order_and_single_applies_make_one_effect_per_mail(database_url, db):
    workers, rounds, size = 4, 20, 10
    errors: list[BaseException] = []
    for r in range(rounds):
        run = f"race{r}"
        start = threading.Barrier(workers)

        def work(w: int, run: str = run, start: threading.Barrier = start) -> None:
            items = [mail(run, n) for n in range(size)]
            random.Random(w).shuffle(items)
            try:
                with psycopg.connect(database_url, autocommit=True) as conn:
                    start.wait()
                    if w == 0:
                        for it in items:
                            apply_mail(conn, *it)
                    else:
                        apply_mails(conn, items)
            except BaseException as exc:  # the test reports every worker's failure
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []
    rows = db.execute(
        "SELECT external_message_id FROM tickets UNION ALL SELECT external_message_id FROM ticket_comments"
    )
    effects = [r[0] for r in rows]
    assert len(effects) == len(set(effects)) == rounds * size
    assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0
