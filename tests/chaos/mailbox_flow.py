"""The per-user mailbox jobs as a chaos flow: manual triggers and scheduler ticks, workers reading a real dovecot.

The storm's "events" are users: each gets K copies of ``POST /jobs/{user}/trigger`` through the real handler from
the sandboxes, whose pollers run the job worker on the JobsQueue and tick the scheduler every half second, as
EventBridge would. Each user's mailbox holds transaction-alert mails before the storm, more arrive during it,
and some users also get one alert whose amount cannot be read (truly unreadable: quarantined at once).
The sandboxes read dovecot through ``FaultyImapProxy``, which hangs up or resets connections in the middle of a
FETCH while the storm's faults are on, and records every user's sessions. Recovery: the reapers expire jobs
whose lease lapsed (a SIGKILLed worker's), the scheduler ticks on as the clock moves on, SQS redelivers, and a
job message parked in the JobsQueue's DLQ is moved back (SQS's DLQ redrive).

What must hold then (``_held``): no job pending; per user and slot, the slot's job and its re-runs only (a
re-run is a trigger after the slot's job finished), numbered without a gap; every 202 named a job of its own;
every mail processed exactly once (one ``processed_mails`` row, one ``mail_transactions`` row, one ``event_log``
row), every unreadable one quarantined once and nothing else quarantined; never two IMAP sessions for one user at
once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import time_machine

from exactly_once.flows.mailbox import jobs as mailbox_jobs
from tests.chaos.imap_faults import FaultyImapProxy
from tests.chaos.storm import ChaosFlow, Outcome, Settings
from tests.harness import Stack
from tests.mailbox_support import SCHEDULER, TOKEN_HEADERS, TRIGGER, WORKER
from tests.proofs.crash_support import after_visibility_timeout, redrive

SECRET, PASSWORD = "IMAP_PASSWORD_CHAOS", "pw-chaos-storm"  # one secret for the storm's users (env first)
PROCESSOR = "exactly_once.flows.mailbox.transaction_alerts:TransactionAlerts"
MAILS_BEFORE = 3  # alerts in each mailbox before the storm; one more arrives during it
UNREADABLE_EVERY = 3  # users 0, 3, 6...: one more alert, whose amount cannot be read
JOB_LEASE = 3  # MAILBOX_JOB_TIMEOUT_SECONDS + MAILBOX_LEASE_GRACE_SECONDS below


@dataclass
class _Mailboxes:
    """What the storm put where: the dovecot, the proxy in front of it, the users' logins and their mails."""

    dovecot: Any = None
    proxy: FaultyImapProxy | None = None
    login: dict[str, str] = field(default_factory=dict)  # user -> IMAP username
    mails: dict[str, set[str]] = field(default_factory=dict)  # user -> Message-IDs of readable alerts
    unreadable: dict[str, set[str]] = field(default_factory=dict)

    def add(self, user: str, n: int, *, readable: bool = True) -> None:
        mid = f"<{user}-{n}@bank.example>"
        body = (
            f"Your account XX{1000 + n} was debited with INR {n + 1},250.00 on 2026-03-01. Ref TXN{n:06d}."
            if readable
            else "A payment was made from your account. Amount: see the attached statement."
        )
        self.dovecot.add_mail(self.login[user], mid, subject="Transaction alert", body=body)
        (self.mails if readable else self.unreadable).setdefault(user, set()).add(mid)


STATE = _Mailboxes()


def _attach(dovecot: Any) -> None:
    STATE.dovecot = dovecot
    if STATE.proxy is None:
        STATE.proxy = FaultyImapProxy((dovecot.host, dovecot.port)).start()


def _setup(stack: Stack, users: list[str]) -> None:
    assert STATE.dovecot is not None and STATE.proxy is not None, "the mailbox flow needs the dovecot fixture"
    STATE.login.clear(), STATE.mails.clear(), STATE.unreadable.clear()
    for user in users:
        STATE.login[user] = f"{user}.{uuid.uuid4().hex[:8]}"  # dovecot outlives the test (the proxy drops .<hex>)
        STATE.dovecot.add_user(STATE.login[user], PASSWORD)
    for user in users:
        STATE.dovecot.wait_for_login(STATE.login[user], PASSWORD)
    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
        for i, user in enumerate(users):
            conn.execute(
                "INSERT INTO mailbox_configs (user_id, interval_minutes, imap_host, imap_port, imap_username,"
                " imap_ssl, password_secret) VALUES (%s, 1, %s, %s, %s, false, %s)",
                (user, STATE.proxy.host, STATE.proxy.port, STATE.login[user], SECRET),
            )
            for n in range(MAILS_BEFORE):
                STATE.add(user, n)
            if i % UNREADABLE_EVERY == 0:
                STATE.add(user, MAILS_BEFORE + 1, readable=False)


@contextmanager
def _imap_faults(settings: Settings) -> Iterator[Counter[str]]:
    """While the harness's faults are on: the proxy's hang-ups and resets, and one new mail per user arriving."""
    proxy = STATE.proxy
    assert proxy is not None
    proxy.injected.clear(), proxy.overlaps.clear(), proxy.max_at_once.clear(), proxy.fetches.clear()
    proxy.seed = settings.seed
    proxy.rate = min(0.5, settings.rate * 4)  # per FETCH: a job makes two, so a short storm only a few dozen
    stop = threading.Event()

    def arrive() -> None:
        for user in list(STATE.login):
            if stop.wait(0.05):
                return
            STATE.add(user, MAILS_BEFORE)

    mail = threading.Thread(target=arrive)
    mail.start()
    try:
        yield proxy.injected
    finally:
        proxy.rate = 0.0
        stop.set()
        mail.join()


def _recover(stack: Stack, db: Any, round_: int) -> int:
    """A recovery round's mailbox part: the scheduler's next tick, the JobsQueue worked off, and the job messages
    parked in its DLQ moved back until both are empty.

    The tick's clock is two minutes further on per round: every user is due again, even one whose last job a
    re-delivered trigger made in a later slot (the provider's retry runs past the dead invocation's deadline,
    ``after_invocation_deadline``, so its slot can be the next minute's)."""
    from devstack.lambda_runtime import LambdaContext

    with time_machine.travel(time.time() + 120 * (round_ + 1)):
        stack.handler(SCHEDULER)({"source": "aws.events"}, LambdaContext(SCHEDULER, 60))
    moved = 0
    for _ in range(10):  # a message the storm's receives used up goes to the DLQ when SQS hands it out again
        redrive(stack, WORKER, "JobsQueue")
        moved += _redrive_dead_jobs(stack)
        if not stack.queue_depth("JobsQueue") and not stack.queue_depth("JobsDeadLetterQueue"):
            break
    return moved


def _redrive_dead_jobs(stack: Stack) -> int:
    """SQS's DLQ redrive for the JobsQueue: a job message whose five receives all met a fault goes back; the
    worker settles it (a job already expired by the reaper: acknowledged; a queued one: claimed)."""
    sqs, physical = stack.sqs(), stack.aws.physical
    moved = 0
    # On redrive's clock: a message SQS parked while ``redrive`` had moved the clock on is not visible before it.
    with after_visibility_timeout(stack, "JobsQueue"):
        while got := sqs.receive_message(QueueUrl=physical["JobsDeadLetterQueue"], MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for m in got:
                sqs.send_message(
                    QueueUrl=physical["JobsQueue"],
                    MessageBody=m["Body"],
                    MessageGroupId=f"redrive-{m['MessageId']}",
                    MessageDeduplicationId=m["MessageId"],
                )
                sqs.delete_message(QueueUrl=physical["JobsDeadLetterQueue"], ReceiptHandle=m["ReceiptHandle"])
                moved += 1
    return moved


def _held(stack: Stack, db: Any, users: list[str], where: str, outcome: Outcome) -> int:
    """The mailbox flow's invariants (module docstring); returns the mails processed, the row's effects."""
    proxy = STATE.proxy
    assert proxy is not None
    rows = db.execute("SELECT user_id, slot, job_id, origin, status FROM mailbox_jobs ORDER BY id").fetchall()
    pending = [r for r in rows if r[4] in mailbox_jobs.PENDING]
    assert not pending, f"jobs still pending after the recovery: {pending} {where}"
    slots: dict[tuple[str, Any], list[tuple[str, str]]] = {}
    for user, slot, jid, origin, _status in rows:
        slots.setdefault((user, slot), []).append((jid, origin))
    for (user, slot), made in slots.items():
        expected = {mailbox_jobs.job_id(user, slot, n) for n in range(len(made))}
        assert {j for j, _ in made} == expected, f"{user} slot {slot}: jobs {made}, not the slot's chain {where}"
        reruns = [o for j, o in made if j != mailbox_jobs.job_id(user, slot)]
        assert set(reruns) <= {"trigger"}, f"{user} slot {slot}: a re-run not made by a trigger: {made} {where}"
    origin = {jid: (user, o) for user, _slot, jid, o, _status in rows}
    accepted = Counter(outcome.accepted_ids)
    assert max(accepted.values(), default=1) == 1, f"two 202s named one job: {accepted} {where}"
    for jid in accepted:
        assert origin.get(jid, ("", ""))[1] == "trigger", f"a 202 named {jid}, no trigger's job {where}"
    processed = Counter(db.execute("SELECT user_id, message_id FROM processed_mails").fetchall())
    effects = Counter(db.execute("SELECT user_id, message_id FROM mail_transactions").fetchall())
    logged = Counter(
        tuple(key.split(":", 1))
        for (key,) in db.execute("SELECT event_key FROM event_log WHERE provider = 'mailbox'").fetchall()
    )
    parked = Counter(db.execute("SELECT external_id FROM quarantine WHERE provider = 'mailbox'").fetchall())
    readable = {(u, m) for u in users for m in STATE.mails.get(u, ())}
    unreadable = {m for u in users for m in STATE.unreadable.get(u, ())}
    for name, seen in (("processed_mails", processed), ("mail_transactions", effects), ("event_log", logged)):
        wrong = {k: seen.get(k, 0) for k in readable | set(seen) if seen.get(k, 0) != (k in readable)}
        assert not wrong, f"{name}: mails not exactly once: {wrong}; {_state(stack, db, {u for u, _ in wrong})} {where}"
    assert parked == Counter({(m,): 1 for m in unreadable}), f"quarantined {parked}, unreadable {unreadable} {where}"
    overlapping = {STATE.login.get(u, u): n for u, n in proxy.max_at_once.items() if n > 1}
    assert not overlapping and not proxy.overlaps, f"two IMAP sessions at once: {overlapping} {where}"
    sessions = sum(proxy.logins[STATE.login[u]] for u in users)
    made_by = Counter(o for _u, _s, _j, o, _st in rows)
    ended = Counter(st for *_r, st in rows)
    outcome.notes = (
        f"{len(users)} users: {len(rows)} jobs ({made_by['trigger']} by triggers, {made_by['schedule']} by ticks; "
        f"{', '.join(f'{n} {s}' for s, n in sorted(ended.items()))}), {len(accepted)} triggers answered 202, "
        f"none pending; {len(readable)} mails processed once, {len(unreadable)} unreadable quarantined once; "
        f"{sessions} IMAP sessions, at most 1 per user at once"
    )
    return len(readable)


def _state(stack: Stack, db: Any, users: set[str]) -> str:
    """Where the users' jobs and mailboxes stand, for a failure's message."""
    jobs = db.execute(
        "SELECT job_id, origin, status, attempts, mails_seen, mails_processed, error, created_at, finished_at"
        " FROM mailbox_jobs WHERE user_id = ANY(%s) ORDER BY id",
        (sorted(users),),
    ).fetchall()
    checked = db.execute(
        "SELECT user_id, last_check_time FROM mailbox_configs WHERE user_id = ANY(%s)", (sorted(users),)
    ).fetchall()
    logins = {u: STATE.proxy.logins.get(STATE.login[u], 0) if STATE.proxy else "?" for u in users}
    queued = {q: stack.queue_depth(q) for q in ("JobsQueue", "JobsDeadLetterQueue")}
    return f"jobs {jobs}, last checks {checked}, IMAP logins {logins}, queues {queued}"


MAILBOX = ChaosFlow(
    "mailbox",
    TRIGGER,
    "/jobs/{id}/trigger",
    lambda user: (b"", dict(TOKEN_HEADERS)),
    "",  # the effects are the mails, counted by ``_held``
    "",
    setup=_setup,
    provider="mailbox",
    env={
        SECRET: PASSWORD,
        "MAILBOX_PROCESSOR": PROCESSOR,
        # A dead worker's lease lapses in the storm's time. A live worker's never ends under it: its one message
        # stays in flight (the JobsQueue's visibility timeout) while it runs, and the reaper runs in the recovery.
        "MAILBOX_JOB_TIMEOUT_SECONDS": str(JOB_LEASE - 1),
        "MAILBOX_LEASE_GRACE_SECONDS": "1",
        "MAILBOX_IMAP_TIMEOUT_SECONDS": "2",
        "MAILBOX_QUEUE_TTL_SECONDS": str(JOB_LEASE),  # a job whose message was lost expires as soon
        "MAILBOX_RELAY_GRACE_SECONDS": "1",
    },
    # Open: a user whose last job has not succeeded (pending, or failed or expired: the next due tick makes one).
    open_work="SELECT count(*) FROM mailbox_configs c LEFT JOIN LATERAL (SELECT status FROM mailbox_jobs j"
    " WHERE j.user_id = c.user_id ORDER BY j.id DESC LIMIT 1) last ON true WHERE last.status IS DISTINCT FROM"
    " 'succeeded'",
    check=_held,
    pollers=((WORKER, "JobsQueue"),),
    tick=SCHEDULER,
    settled=frozenset({409}),  # job_pending: the user's job is already on its way; a client does not retry it
    tables=("mailbox_jobs", "processed_mails", "mail_transactions"),
    fixture="dovecot",
    attach=_attach,
    faults_at=_imap_faults,
    recover=_recover,
    own_quarantine="mailbox",
)
