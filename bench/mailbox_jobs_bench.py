"""Mailbox jobs (the mailbox-jobs incident): jobs per user per slot under the race, IMAP connections per user at once.

Per (user, slot): a scheduler tick and ten manual triggers fire together from eleven
threads, each with its own Postgres connection; then the slot's job is handed to three
racing workers at once (a duplicate delivery), which read a real dovecot through a
proxy that counts connections per user at the wire.

The baseline, in the same run, is the seed's design: check for a pending job, then
insert one with a timestamp-or-random id (no unique index), and workers that read the
mailbox without a claim. Speed is the trigger's median latency as a ratio to it.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.common import table, write_result
from devstack.aws_local import LocalAws
from devstack.dovecot import Dovecot
from devstack.imap_proxy import CountingImapProxy
from devstack.lambda_runtime import add_code_paths
from devstack.moto_server import SerializedMotoServer

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
USERS = 8
SLOTS = 4
TRIGGERS = 10
WORKERS = 3

NAIVE_SCHEMA = """
CREATE TABLE naive_jobs (job_id text, user_id text, slot timestamptz, status text, created_at timestamptz DEFAULT now())
"""


def _naive_trigger(conn: psycopg.Connection[Any], sqs: Any, queue_url: str, user_id: str, slot: datetime) -> bool:
    """The seed's check-then-enqueue: read the pending jobs, then insert with a fresh id and send it."""
    pending = conn.execute(
        "SELECT 1 FROM naive_jobs WHERE user_id = %s AND status IN ('queued', 'running')", (user_id,)
    ).fetchone()
    if pending:
        return False
    conn.execute(
        "INSERT INTO naive_jobs (job_id, user_id, slot, status) VALUES (%s, %s, %s, 'queued')",
        (job_id := uuid.uuid4().hex, user_id, slot),
    )
    sqs.send_message(QueueUrl=queue_url, MessageBody=job_id, MessageGroupId=user_id, MessageDeduplicationId=job_id)
    return True


def _race(fns: list[Any]) -> list[float]:
    """Run the callables at once from their own threads; return each one's latency."""
    barrier = threading.Barrier(len(fns))
    latencies: list[float] = [0.0] * len(fns)

    def run(i: int) -> None:
        barrier.wait()
        t0 = time.perf_counter()
        fns[i]()
        latencies[i] = time.perf_counter() - t0

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return latencies


def main() -> None:
    name = f"eo_bench_mbx_{os.getpid()}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    moto = SerializedMotoServer().start()
    dovecot = Dovecot().start()
    proxy = CountingImapProxy((dovecot.host, dovecot.port)).start()
    try:
        result = run(url, moto.url, dovecot, proxy)
    finally:
        proxy.stop()
        dovecot.stop()
        moto.stop()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    rows = [
        (
            "jobs per user per slot (goal 1.00)",
            f"{result['ours']['jobs_per_user_slot']:.2f}",
            f"{result['naive']['jobs_per_user_slot']:.2f}",
        ),
        ("max jobs in one (user, slot)", result["ours"]["max_jobs_in_a_slot"], result["naive"]["max_jobs_in_a_slot"]),
        (
            "IMAP connections per user at once (goal <= 1)",
            result["ours"]["imap_max_at_once"],
            result["naive"]["imap_max_at_once"],
        ),
        (
            "IMAP logins per job",
            f"{result['ours']['imap_logins_per_job']:.2f}",
            f"{result['naive']['imap_logins_per_job']:.2f}",
        ),
        ("trigger median latency, ratio to baseline", f"{result['trigger_latency_ratio']:.2f}", "1.00"),
    ]
    print(f"{USERS} users x {SLOTS} slots; per slot 1 tick + {TRIGGERS} triggers, then {WORKERS} racing workers")
    print(table(rows, ("measure", "exactly-once", "seed baseline")))
    print(f"wrote {write_result('mailbox_jobs', result)}")


def run(url: str, moto_url: str, dovecot: Dovecot, proxy: CountingImapProxy) -> dict[str, Any]:
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "DATABASE_URL": url,
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            "MAILBOX_ALLOW_PLAINTEXT_IMAP": "true",  # the dovecot on loopback speaks plain IMAP
        }
    )
    add_code_paths()
    from exactly_once.core import aws
    from exactly_once.flows.mailbox import jobs as mailbox_jobs
    from exactly_once.flows.mailbox import scheduling as mailbox_scheduling
    from exactly_once.flows.mailbox import worker as mailbox_worker
    from exactly_once.flows.mailbox.imap import ImapAccount, fetch_since
    from exactly_once.flows.mailbox.scheduling import JobConflictError
    from exactly_once.ops.migrate import migrate

    local = LocalAws(moto_url).provision()
    queue_url = local.physical["JobsQueue"]
    naive_queue = local.physical["JobsDeadLetterQueue"]  # another FIFO queue, so the two runs do not mix
    sqs = aws.sqs()
    conns = [psycopg.connect(url, autocommit=True) for _ in range(TRIGGERS + 1 + WORKERS)]
    setup = conns[0]
    migrate(setup)
    setup.execute(NAIVE_SCHEMA)
    users = []
    for u in range(USERS):
        user_id, login, secret = f"bench{u}", f"bench{u}-{uuid.uuid4().hex[:6]}", f"IMAP_PASSWORD_BENCH{u}"
        password = uuid.uuid4().hex
        os.environ[secret] = password
        dovecot.add_user(login, password)
        for m in range(3):
            dovecot.add_mail(login, f"<b{u}.{m}@bank.example>")
        setup.execute(
            "INSERT INTO mailbox_configs (user_id, interval_minutes, imap_host, imap_port, imap_username, imap_ssl,"
            " password_secret) VALUES (%s, 1, %s, %s, %s, false, %s)",
            (user_id, proxy.host, proxy.port, login, secret),
        )
        users.append((user_id, login, password))
    base = mailbox_jobs.slot_of(datetime.now(UTC), 60) + timedelta(minutes=1)

    # --- ours ---------------------------------------------------------------------------------------------
    ours_latency: list[float] = []
    conflicts: Counter[str] = Counter()
    for s in range(SLOTS):
        now = base + timedelta(minutes=s, seconds=5)
        for user_id, _, _ in users:

            def trig(conn: psycopg.Connection[Any], uid: str = user_id, at: datetime = now) -> None:
                try:
                    mailbox_scheduling.trigger(conn, sqs, queue_url, uid, at)
                except JobConflictError as exc:
                    conflicts[exc.code] += 1

            fns = [lambda c=conns[i]: trig(c) for i in range(TRIGGERS)]
            fns.append(lambda at=now: mailbox_scheduling.tick(conns[TRIGGERS], sqs, queue_url, at))
            ours_latency.extend(_race(fns)[:TRIGGERS])
        # the slot's jobs, each delivered to racing workers at once
        pending = setup.execute("SELECT job_id FROM mailbox_jobs WHERE status IN ('scheduled', 'queued')").fetchall()
        for (jid,) in pending:
            _race([lambda c=conns[TRIGGERS + 1 + w], j=jid: mailbox_worker.run_job(c, j) for w in range(WORKERS)])
    per_slot = setup.execute("SELECT count(*) FROM mailbox_jobs GROUP BY user_id, slot").fetchall()
    jobs_total = sum(r[0] for r in per_slot)
    ours = {
        "jobs_per_user_slot": jobs_total / (USERS * SLOTS),
        "max_jobs_in_a_slot": max(r[0] for r in per_slot),
        "imap_max_at_once": max(proxy.max_at_once.values()),
        "imap_logins_per_job": sum(proxy.logins.values()) / jobs_total,
        "conflicts": dict(conflicts),
        "mails_processed_once": setup.execute("SELECT count(*) FROM processed_mails").fetchone()[0],  # type: ignore[index]
    }

    # --- the seed's baseline ------------------------------------------------------------------------------
    proxy.reset()
    naive_latency: list[float] = []
    for s in range(SLOTS):
        now = base + timedelta(minutes=s, seconds=5)
        for user_id, _, _ in users:
            fns = [
                lambda c=conns[i], uid=user_id, at=now: _naive_trigger(c, sqs, naive_queue, uid, at)
                for i in range(TRIGGERS + 1)
            ]
            naive_latency.extend(_race(fns)[:TRIGGERS])
        queued = setup.execute("SELECT job_id, user_id FROM naive_jobs WHERE status = 'queued'").fetchall()
        by_user = {u[0]: u for u in users}
        for _jid, uid in queued:
            _, login, password = by_user[uid]
            account = ImapAccount(proxy.host, proxy.port, login, password, use_ssl=False, allow_plaintext=True)
            # no claim: every worker that receives the job reads the mailbox
            _race([lambda a=account: fetch_since(a, None) for _ in range(WORKERS)])
        setup.execute("UPDATE naive_jobs SET status = 'done' WHERE status = 'queued'")
    naive_slots = setup.execute("SELECT count(*) FROM naive_jobs GROUP BY user_id, slot").fetchall()
    naive_total = sum(r[0] for r in naive_slots)
    naive = {
        "jobs_per_user_slot": naive_total / (USERS * SLOTS),
        "max_jobs_in_a_slot": max(r[0] for r in naive_slots),
        "imap_max_at_once": max(proxy.max_at_once.values()),
        "imap_logins_per_job": sum(proxy.logins.values()) / naive_total,
    }
    for c in conns:
        c.close()
    return {
        "users": USERS,
        "slots": SLOTS,
        "triggers_per_slot": TRIGGERS,
        "racing_workers_per_job": WORKERS,
        "ours": ours,
        "naive": naive,
        "trigger_latency_ratio": statistics.median(ours_latency) / statistics.median(naive_latency),
        "trigger_median_ms": {
            "ours": statistics.median(ours_latency) * 1000,
            "naive": statistics.median(naive_latency) * 1000,
        },
    }


if __name__ == "__main__":
    main()
