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
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.chaos.recovery import recover
from tests.chaos.sandbox import LEASE_SECONDS, Item, child
from tests.harness import Stack

#: The event source mappings the sandboxes poll while they deliver: (function, queue).
WORKERS = (("EventWorkerFunction", "EventsQueue"), ("SendWorkerFunction", "SendQueue"))
TABLES = ("event_log", "send_queue", "tickets", "whatsapp_messages", "linkedin_messages")  # held locks land here


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
    env: dict[str, str] = field(default_factory=dict)  # the flow's own settings in the storm's sandboxes
    open_work: str = ""  # SQL: rows of the flow still open (a lease to lapse, a reaper to run)
    check: Callable[[Stack, Any, list[str], str, Outcome], int | None] | None = (
        None  # own invariants; may count the effects
    )
    # -- what a flow that is not a webhook needs (the mailbox jobs: tests/chaos/mailbox_flow.py) --
    pollers: tuple[tuple[str, str], ...] = WORKERS
    tick: str = ""  # a scheduled function the sandboxes also run every TICK_SECONDS while they deliver (EventBridge)
    settled: frozenset[int] = frozenset()  # final answers besides 2xx that the provider does not retry (a 409)
    tables: tuple[str, ...] = ()  # the flow's tables, for the held locks too
    fixture: str = ""  # a pytest fixture the flow's setup needs, handed to ``attach`` before the storm (dovecot)
    attach: Callable[[Any], None] | None = None
    # Its own faults while the harness's are on (IMAP hang-ups): entered when they start, left when they stop;
    # the Counter it yields is what it injected, by kind.
    faults_at: Callable[[Settings], AbstractContextManager[Counter[str]]] | None = None
    recover: Callable[[Stack, Any, int], int] | None = None  # one recovery round's own step; returns DLQ replays
    own_quarantine: str = ""  # provider whose quarantine rows ``check`` accounts for (its truly unreadable input)


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
    long: bool = False

    @classmethod
    def from_env(cls) -> Settings:
        if os.environ.get("CHAOS_LONG"):
            return cls(seed=int(os.environ.get("CHAOS_SEED", "20")), events=60, copies=4, processes=3, threads=4,
                       rate=float(os.environ.get("CHAOS_RATE", "0.05")), kills=3, pg_every=0.5, long=True)  # fmt: skip
        return cls(seed=int(os.environ.get("CHAOS_SEED", "20")))


@dataclass
class Outcome:
    flow: str
    seed: int
    events: int
    deliveries: int = 0  # requests sent (copies and the provider's retries), in the storm and the recovery
    storm_deliveries: int = 0  # of those, sent while the faults were on
    answered_2xx: int = 0
    refused: int = 0  # answered with a retryable status (or the process died) and retried later
    faults: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    restarts: int = 0  # killed sandboxes replaced by a warm one taking their unanswered deliveries
    pg_terminated: int = 0  # app connections pg_terminate_backend actually hit
    processes: int = 0
    effects: int = 0
    stopped_ingest: int = 0
    stopped_postgres: int = 0
    dlq_replayed: int = 0  # events the faults parked in the DLQ, replayed as the operator would (dlq replay)
    accepted_ids: list[str] = field(default_factory=list)  # the ids a 2xx answer named (a job's id)
    notes: str = ""  # the flow's own figures, for the row
    sends: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    ready_seconds: float = 0.0  # spawning and loading the sandboxes, before any fault
    storm_seconds: float = 0.0
    ack_seconds: list[float] = field(default_factory=list)  # each storm delivery's answer time

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.faults.items())) or "none"
        return (
            f"seed {self.seed}: {self.events} events, {self.deliveries} deliveries ({self.storm_deliveries} while "
            f"the faults were on), {self.refused} refused/lost and retried; faults: {kinds}; pg_terminate hit "
            f"{self.pg_terminated} connections; {self.kills} SIGKILLs, {self.restarts} sandboxes restarted; "
            f"{self.effects} effects, 0 doubled, 0 lost; duplicates stopped: {self.stopped_ingest} at ingest, "
            f"{self.stopped_postgres} by Postgres; {self.dlq_replayed} replayed from the DLQ"
        ) + (f"; {self.notes}" if self.notes else "")


# -- the harness's own faults: Postgres and process death -----------------------------------------------------


def _postgres_faults(
    url: str, rng: random.Random, every: float, stop: threading.Event, seen: Counter[str], tables: list[str]
) -> None:
    with psycopg.connect(url, autocommit=True, application_name="chaos-harness") as conn:
        while not stop.wait(every * (0.5 + rng.random())):
            if rng.random() < 0.5:
                killed = conn.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND application_name NOT IN ('', 'chaos-harness')"
                ).fetchone()
                seen["pg_terminate"] += 1
                seen["pg_terminated"] += int(killed[0]) if killed else 0
            else:
                table = rng.choice(tables)
                with conn.transaction():
                    conn.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")  # past the children's lock_timeout
                    seen["pg_lock_held"] += 1
                    time.sleep(every)


@dataclass
class _Slot:
    """One of the storm's sandboxes: the process now running it and the deliveries it was given."""

    proc: Any
    items: list[Item]
    restarts: int = 0


class _Sandboxes:
    """The storm's processes: each loaded before the faults start, a dead one replaced by a warm spare
    that takes the deliveries it had not finished (the provider retries what it never got an answer for)."""

    def __init__(self, env: dict[str, str], function: str, answers: Path) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.env, self.function, self.answers = env, function, answers
        self.answered = self.ctx.Value("i", 0)
        self.spawned = 0
        self.restarts = 0

    def spawn(self) -> tuple[Any, Any, Any]:
        ready, work = self.ctx.Event(), self.ctx.Queue()
        env = {**self.env, "EO_FAULTS_STREAM": str(self.spawned)}  # a fault schedule per sandbox, from the seed
        self.spawned += 1
        proc = self.ctx.Process(target=child, args=(env, self.function, str(self.answers), ready, work, self.answered))
        proc.start()
        return proc, ready, work

    def finished(self) -> set[int]:
        """The deliveries that got their final answer (2xx, a refusal, or the quick retries spent)."""
        done: set[int] = set()
        if self.answers.exists():
            for line in self.answers.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    idx, _eid, _status, _accepted, final, _seconds = json.loads(line)
                    if final:
                        done.add(idx)
        return done


def _killer(slots: list[_Slot], answered: Any, points: list[int], stop: threading.Event, seen: Counter[str]) -> None:
    """SIGKILL a live sandbox when the storm's answers reach each seeded point: kills land on work in flight."""
    rng = random.Random(sum(points))
    for point in points:
        while answered.value < point:
            if stop.wait(0.01):
                return
        alive = [s.proc for s in slots if s.proc.is_alive()]
        if alive:
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
    order = [eid for eid in eids for _ in range(settings.copies)]
    rng.shuffle(order)
    items: list[Item] = [(idx, eid, *deliveries[eid]) for idx, eid in enumerate(order)]
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
        "CHAOS_POLLERS": json.dumps(
            [[f, stack.aws.physical[q], stack.aws.arns[q], _batch(stack, f, q)] for f, q in flow.pollers]
        ),
        "CHAOS_TICK": flow.tick,
        **flow.env,
    }
    from devstack.fakes import Behaviour

    for n, kind in enumerate(flow.fakes):
        status = (429, 500, 503)[n % 3]  # a 429 carries the provider's Retry-After where it sends one
        stack.fakes.behaviours[kind] = Behaviour(
            fail_rate=settings.rate, hang_rate=settings.rate, hang=1.5, fail_status=status, seed=settings.seed + n
        )
    boxes = _Sandboxes(env, flow.function, answers)
    meter_spawn = settings.processes + 1
    pending = [boxes.spawn() for _ in range(settings.processes + 1)]  # the last one is the warm spare
    for proc, ready, _work in pending[:-1]:  # the spare goes on loading while the storm starts
        while not ready.wait(timeout=0.05):
            if not proc.is_alive() or time.monotonic() - started > 120:
                raise AssertionError(f"{flow.name}: a sandbox never loaded its handlers (exit {proc.exitcode})")
    outcome.ready_seconds = round(time.monotonic() - started, 1)
    slots = []
    for (proc, _ready, queue), chunk in zip(
        pending[:-1], [items[i :: settings.processes] for i in range(settings.processes)], strict=True
    ):
        queue.put(chunk)
        slots.append(_Slot(proc, chunk))
    spare = pending[-1]
    # Only now, every sandbox loaded and working, do the harness's faults start.
    harness: Counter[str] = Counter()
    stop = threading.Event()
    points = sorted(rng.randrange(1, max(2, len(items) * 9 // 10)) for _ in range(settings.kills))
    helpers = [
        threading.Thread(
            target=_postgres_faults,
            args=(database_url, rng, settings.pg_every, stop, harness, [*TABLES, *flow.tables]),
        ),
        threading.Thread(target=_killer, args=(slots, boxes.answered, points, stop, harness)),
    ]
    own = contextlib.ExitStack()  # the flow's own faults, on with the harness's
    flow_faults: Counter[str] = own.enter_context(flow.faults_at(settings)) if flow.faults_at else Counter()
    for h in helpers:
        h.start()
    storm_started = time.monotonic()
    deadline = storm_started + 120
    while any(s.proc.exitcode is None for s in slots) and time.monotonic() < deadline:
        time.sleep(0.02)
        for slot in slots:
            if slot.proc.exitcode in (None, 0):
                continue
            done = boxes.finished()
            left = [it for it in slot.items if it[0] not in done]
            if not left or slot.restarts >= 10:
                slot.proc = _Exited()
                continue
            proc, _ready, queue = spare
            queue.put(left)  # a warm sandbox takes over what never got an answer
            slot.proc, slot.items = proc, left
            slot.restarts += 1
            boxes.restarts += 1
            spare = boxes.spawn()
            meter_spawn += 1
    stop.set()
    for h in helpers:
        h.join()
    own.close()
    spare[0].kill()  # never given work: nothing of the storm is lost with it
    for slot in slots:
        if slot.proc.exitcode is None:  # past the deadline: a hang
            slot.proc.kill()
    for proc in [spare[0], *(s.proc for s in slots)]:
        proc.join(timeout=30)
    outcome.storm_seconds = round(time.monotonic() - storm_started, 1)
    outcome.processes = meter_spawn
    outcome.restarts = boxes.restarts
    for kind in flow.fakes:  # the provider heals; what it injected is counted
        for name, n in stack.fakes.behaviours.pop(kind).injected.items():
            outcome.faults[f"{kind} {name}"] += n
    outcome.faults.update(flow_faults)
    for path in faults_dir.glob("*.faults"):
        for line in path.read_text().splitlines():
            kind, service, _ = line.split(" ", 2)
            outcome.faults[f"{service} {kind}"] += 1
    outcome.faults.update({k: v for k, v in harness.items() if k not in ("harness_sigkill", "pg_terminated")})
    outcome.pg_terminated = harness["pg_terminated"]
    outcome.kills = (
        harness["harness_sigkill"] + outcome.faults.get("dynamodb kill", 0) + outcome.faults.get("sqs kill", 0)
    )
    recover(stack, db, flow, deliveries, answers, outcome)
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome


def _batch(stack: Stack, function: str, queue: str) -> int:
    """The event source mapping's BatchSize in the template (10 where it names none)."""
    from devstack.routes import queue_sources

    sizes = {(s.function, s.queue): s.batch_size for s in queue_sources(stack.aws.template)}
    return sizes.get((function, queue), 10)


class _Exited:
    """A slot whose sandbox is gone and has nothing left to deliver."""

    exitcode = 0

    def is_alive(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        return None

    def kill(self) -> None:
        return None
