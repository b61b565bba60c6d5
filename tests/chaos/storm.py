"""One chaos storm: N unique events x K copies through the real handlers from spawned processes, with faults
at every dependency at once, then production's recovery, then the invariants, from Postgres and the fakes.

Faults (all from one seed; a failing run prints it, and the same seed replays the same schedules):

- AWS (DynamoDB, SQS): ``exactly_once.core.faults`` in every child (``EO_FAULTS``, a stream per child):
  throttles, 500s, answers lost after the call was applied, SIGKILL right after an applied call;
- Postgres: a harness thread terminates the app's connections (``pg_terminate_backend`` by
  ``application_name``, as a failover does) and holds table locks past the children's ``lock_timeout``;
- providers: the fakes fail (5xx, 429) or hang past the client's timeout after applying the effect, at a rate;
- processes: the harness SIGKILLs children at random moments (not at crashpoints).

Recovery is production's own: the provider re-delivers what it never got a 2xx for (after the dead
invocations' deadlines), SQS redelivers after the visibility timeout, the reapers run, the send worker drains.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.harness import Stack
from tests.proofs.children import reap
from tests.proofs.crash_support import after_invocation_deadline, redrive

RETRYABLE = frozenset({429, 500, 502, 503, 504})
HOST = "http://127.0.0.1:3000"
LEASE_SECONDS = 2


@dataclass(frozen=True)
class ChaosFlow:
    name: str
    function: str
    path: str
    deliver: Callable[[str], tuple[bytes, dict[str, str]]]  # one signed delivery of this event id, signed now
    effects: str  # SQL: effects of the event id %(id)s
    all_effects: str  # SQL: every effect of this flow (no effect without an event)
    setup: Callable[[Stack, list[str]], None] | None = None
    fakes: tuple[str, ...] = ()  # fake provider kinds the flow calls (faults injected there)
    provider: str = ""  # event_log.provider, for the duplicates Postgres stopped


@dataclass(frozen=True)
class Settings:
    seed: int = 20
    events: int = 6
    copies: int = 3
    processes: int = 2
    threads: int = 3
    rate: float = 0.05  # AWS and provider faults, per call
    kills: int = 1  # harness SIGKILLs of children at random moments
    pg_every: float = 0.4  # seconds between Postgres faults (a termination or a held lock)

    @classmethod
    def from_env(cls) -> Settings:
        if os.environ.get("CHAOS_LONG"):
            return cls(seed=int(os.environ.get("CHAOS_SEED", "20")), events=60, copies=4, processes=3, threads=4,
                       rate=float(os.environ.get("CHAOS_RATE", "0.05")), kills=3, pg_every=0.5)  # fmt: skip
        return cls(seed=int(os.environ.get("CHAOS_SEED", "20")))


@dataclass
class Outcome:
    flow: str
    seed: int
    events: int
    deliveries: int = 0  # requests the storm sent (copies and the provider's retries)
    answered_2xx: int = 0
    refused: int = 0  # answered with a retryable status (or the process died) and retried later
    faults: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    effects: int = 0
    stopped_ingest: int = 0
    stopped_postgres: int = 0
    sends: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.faults.items())) or "none"
        return (
            f"seed {self.seed}: {self.events} events, {self.deliveries} deliveries, {self.refused} refused/lost "
            f"and retried; faults: {kinds}; {self.kills} SIGKILLs; {self.effects} effects, 0 doubled, 0 lost; "
            f"duplicates stopped: {self.stopped_ingest} at ingest, {self.stopped_postgres} by Postgres"
        )


# -- the child: a sandbox under faults, storming ingest then draining the queues ----------------------------------


def _child(env: dict[str, str], function: str, items: list[tuple[str, bytes, dict[str, str]]], out: str) -> None:
    os.environ.update(env)
    from devstack.lambda_runtime import LambdaContext, add_code_paths, apigw_event, function_timeout, load_handler

    add_code_paths()
    from tests.proofs.concurrency_support import _per_thread_containers

    _per_thread_containers()
    handler = load_handler(function)
    lock = threading.Lock()
    url = f"{HOST}{env['CHAOS_PATH']}"

    def one(eid: str, body: bytes, headers: dict[str, str]) -> None:
        for _ in range(3):  # the provider's quick retries; what stays refused is retried in the recovery
            try:
                context = LambdaContext(function_name=function, timeout_s=function_timeout(function))
                result = handler(apigw_event("POST", url, body, headers), context)
                status, answer = int(result["statusCode"]), result.get("body") or ""
            except Exception:  # an unhandled error: API Gateway answers 502
                status, answer = 502, ""
            with lock, open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps([eid, status, _accepted(answer)]) + "\n")
            if status not in RETRYABLE:
                return
            time.sleep(0.02)

    chunks = [items[i :: int(env["CHAOS_THREADS"])] for i in range(int(env["CHAOS_THREADS"]))]
    threads = [threading.Thread(target=lambda c=c: [one(*it) for it in c]) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _drain_queues(env)


def _accepted(answer: str) -> int | None:
    with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
        return int(json.loads(answer)["accepted"])
    return None


def _drain_queues(env: dict[str, str]) -> None:
    """The event source mappings: the event worker, then the send worker, under the same faults."""
    from devstack.aws_local import boto_client
    from devstack.lambda_runtime import function_timeout, load_handler
    from devstack.poller import QueuePoller

    sqs = boto_client("sqs", env["AWS_ENDPOINT_URL"])
    for function, queue in (("EventWorkerFunction", "EVENTS"), ("SendWorkerFunction", "SEND")):
        poller = QueuePoller(
            sqs=sqs,
            queue_url=env[f"CHAOS_{queue}_URL"],
            queue_arn=env[f"CHAOS_{queue}_ARN"],
            handler=load_handler(function),
            function_name=function,
            timeout_s=function_timeout(function),
        )
        poller.drain(max_rounds=50)


# -- the harness's own faults: Postgres and process death -----------------------------------------------------


def _postgres_faults(url: str, rng: random.Random, every: float, stop: threading.Event, seen: Counter[str]) -> None:
    with psycopg.connect(url, autocommit=True, application_name="chaos-harness") as conn:
        while not stop.wait(every * (0.5 + rng.random())):
            if rng.random() < 0.5:
                killed = conn.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND application_name NOT IN ('', 'chaos-harness')"
                ).fetchone()
                seen["pg_terminate"] += int(killed[0]) if killed else 0
            else:
                table = rng.choice(["event_log", "send_queue", "tickets", "whatsapp_messages", "linkedin_messages"])
                with conn.transaction():
                    conn.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")  # past the children's lock_timeout
                    seen["pg_lock_held"] += 1
                    time.sleep(every)


def _killer(procs: list[Any], rng: random.Random, kills: int, stop: threading.Event, seen: Counter[str]) -> None:
    for _ in range(kills):
        if stop.wait(rng.uniform(0.5, 4.0)):
            return
        alive = [p for p in procs if p.is_alive()]
        if not alive:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(rng.choice(alive).pid, signal.SIGKILL)
            seen["harness_sigkill"] += 1


# -- the storm -----------------------------------------------------------------------------------------------------


def run(stack: Stack, db: Any, database_url: str, flow: ChaosFlow, settings: Settings, work: Path) -> Outcome:
    started = time.monotonic()
    rng = random.Random(f"{settings.seed}:{flow.name}")
    eids = [f"chaos-{flow.name}-{settings.seed}-{i}" for i in range(settings.events)]
    if flow.setup:
        flow.setup(stack, eids)
    deliveries = {eid: flow.deliver(eid) for eid in eids}
    items = [(eid, *deliveries[eid]) for eid in eids for _ in range(settings.copies)]
    rng.shuffle(items)
    outcome = Outcome(flow.name, settings.seed, len(eids))
    faults_dir = work / "faults"
    faults_dir.mkdir(parents=True, exist_ok=True)
    answers = work / "answers.jsonl"
    spec = {"seed": settings.seed, "rate": settings.rate, "log": str(faults_dir), "services": ["dynamodb", "sqs"]}
    env = {
        **stack.env,
        "EO_FAULTS": json.dumps(spec),
        "DB_LOCK_TIMEOUT_MS": "200",
        "DB_STATEMENT_TIMEOUT_MS": "3000",
        "SEND_PROVIDER_TIMEOUT_SECONDS": "1",
        "SEND_LEASE_SECONDS": str(LEASE_SECONDS),  # a killed send worker's claim lapses in real (Postgres) time
        "GRAPH_TIMEOUT": "1",
        "LLM_TIMEOUT": "1",
        "CHAOS_PATH": flow.path,
        "CHAOS_THREADS": str(settings.threads),
        "CHAOS_EVENTS_URL": stack.aws.physical["EventsQueue"],
        "CHAOS_EVENTS_ARN": stack.aws.arns["EventsQueue"],
        "CHAOS_SEND_URL": stack.aws.physical["SendQueue"],
        "CHAOS_SEND_ARN": stack.aws.arns["SendQueue"],
    }
    from devstack.fakes import Behaviour

    for n, kind in enumerate(flow.fakes):
        status = (500, 503, 429)[n % 3]
        stack.fakes.behaviours[kind] = Behaviour(
            fail_rate=settings.rate, hang_rate=settings.rate, hang=1.5, fail_status=status, seed=settings.seed + n
        )
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_child, args=({**env, "EO_FAULTS_STREAM": str(i)}, flow.function, chunk, str(answers)))
        for i, chunk in enumerate(items[i :: settings.processes] for i in range(settings.processes))
    ]
    harness: Counter[str] = Counter()
    stop = threading.Event()
    helpers = [
        threading.Thread(target=_postgres_faults, args=(database_url, rng, settings.pg_every, stop, harness)),
        threading.Thread(target=_killer, args=(procs, rng, settings.kills, stop, harness)),
    ]
    for p in procs:
        p.start()
    for h in helpers:
        h.start()
    for p in procs:
        p.join(timeout=120)
        if p.is_alive():
            p.kill()
            p.join()
    stop.set()
    for h in helpers:
        h.join()
    for kind in flow.fakes:  # the provider heals; what it injected is counted
        for name, n in stack.fakes.behaviours.pop(kind).injected.items():
            outcome.faults[f"{kind} {name}"] += n
    for path in faults_dir.glob("*.faults"):
        for line in path.read_text().splitlines():
            kind, service, _ = line.split(" ", 2)
            outcome.faults[f"{service} {kind}"] += 1
    outcome.faults.update({k: v for k, v in harness.items() if k != "harness_sigkill"})
    outcome.kills = (
        harness["harness_sigkill"] + outcome.faults.get("dynamodb kill", 0) + outcome.faults.get("sqs kill", 0)
    )
    _recover(stack, db, flow, deliveries, answers, outcome)
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome


def _recover(
    stack: Stack,
    db: Any,
    flow: ChaosFlow,
    deliveries: dict[str, tuple[bytes, dict[str, str]]],
    answers: Path,
    outcome: Outcome,
) -> None:
    """The provider re-delivers every event it never got a 2xx for; SQS redelivers; reapers; send worker."""
    got_2xx: set[str] = set()
    if answers.exists():
        for line in answers.read_text().splitlines():
            with contextlib.suppress(ValueError):
                eid, status, accepted = json.loads(line)
                outcome.deliveries += 1
                if 200 <= status < 300:
                    outcome.answered_2xx += 1
                    got_2xx.add(eid)
                    outcome.stopped_ingest += accepted == 0
                elif status in RETRYABLE:
                    outcome.refused += 1
    for eid in deliveries:
        for _ in range(5):
            if eid in got_2xx:
                break
            outcome.refused += 1
            with after_invocation_deadline(flow.function):  # the dead or refused invocation's reservation lapsed
                raw, headers = flow.deliver(eid)  # re-signed now, as the provider does
                answer = stack.invoke_http(flow.function, "POST", f"{HOST}{flow.path}", raw, headers)
            outcome.deliveries += 1
            if 200 <= answer.status < 300:
                got_2xx.add(eid)
    assert got_2xx == set(deliveries), f"never accepted after the faults stopped: {set(deliveries) - got_2xx}"
    for _ in range(4):
        redrive(stack)
        reap()  # leases lapsed -> unknown; unknown -> reconciled (sent, pending or review); outbox swept
        redrive(stack, "SendWorkerFunction", "SendQueue")
        open_sends = db.execute(
            "SELECT count(*) FROM send_queue WHERE status NOT IN ('sent', 'review', 'failed')"
        ).fetchone()[0]
        if not open_sends and not stack.queue_depth("EventsQueue") and not stack.queue_depth("SendQueue"):
            break
        time.sleep(LEASE_SECONDS + 0.2)  # leases are Postgres time: let a dead worker's lapse
    if flow.provider:
        row = db.execute(
            "SELECT coalesce(sum(deliveries) - count(*), 0) FROM event_log WHERE provider = %s", (flow.provider,)
        ).fetchone()
        outcome.stopped_postgres = int(row[0])
    outcome.sends = Counter(dict(db.execute("SELECT status::text, count(*) FROM send_queue GROUP BY 1").fetchall()))
