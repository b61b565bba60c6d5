"""Storms: the same delivery many times at once from several spawned processes, and spread over a window.

Each of PROCESSES spawned processes (fresh interpreters, like Lambda sandboxes) loads the real handler and
starts THREADS threads (one Postgres connection each, as one per container); every thread then waits on a
barrier across all processes, so the first requests leave together. Each request's start and end are
taken on the machine's monotonic clock, shared by every process, and the most requests open at the same
instant is what the proof reports as "in flight at once": measured, not assumed.

A delivery answered 503 ``in_progress`` (another invocation holds the event's reservation) is retried, as
the provider would; the storm returns each delivery's final status and counts the 503s it retried.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import dataclass
from typing import Any

from tests.procs import run_parallel
from tests.proofs import meter

PROCESSES = 4
THREADS = 6  # per process: 24 senders at once (two storms on two xdist workers stay under max_connections)
COPIES = 100
RETRIES = 100  # 503 in_progress answers one delivery may get before the storm gives up on it


@dataclass(frozen=True)
class StormResult:
    statuses: list[int]  # final status of each delivery, or failures per message for worker storms
    retried: int  # 503 in_progress answers retried
    in_flight: int  # most requests open at the same instant, across every process and thread


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts)]


def _per_thread_containers() -> None:
    """Each thread a warm container of its own: its own Postgres connection and its own metric counters.

    Lambda runs one invocation per container at a time, so the library's per-container state (the cached
    connection, the invocation's metric counters) is never shared; threads here would share it.
    """
    from devstack.functions_host import per_thread_connections
    from exactly_once.core import telemetry

    per_thread_connections()
    local = threading.local()

    def by_provider(_: Any) -> dict[str, Any]:
        if not hasattr(local, "metrics"):
            local.metrics = {}
        return local.metrics  # type: ignore[no-any-return]

    telemetry.Counters._by_provider = property(by_provider, lambda _self, _value: None)  # type: ignore[assignment]


def _storm_child(
    env: dict[str, str], function: str, kind: str, items: list[Any], barrier: Any, threads: int
) -> tuple[list[int], int, list[tuple[int, int]]]:
    """In a spawned process: THREADS threads fire ``items`` at the handler once every process is ready."""
    import os

    os.environ.update(env)
    from devstack.lambda_runtime import (
        LambdaContext,
        add_code_paths,
        apigw_event,
        fifo_message,
        load_handler,
        sqs_event,
    )

    add_code_paths()
    _per_thread_containers()
    handler = load_handler(function)
    lock = threading.Lock()
    statuses: list[int] = []
    intervals: list[tuple[int, int]] = []
    retried = [0]
    ready = threading.Barrier(threads + 1)

    def one(item: Any) -> int:
        started = time.monotonic_ns()
        try:
            if kind == "http":
                method, url, body, headers = item
                result = handler(apigw_event(method, url, body, headers), LambdaContext(function_name=function))
                return int(result["statusCode"])
            result = handler(
                sqs_event([fifo_message(item)], "arn:aws:sqs:us-east-1:000000000000:EventsQueue.fifo"),
                LambdaContext(function_name=function, timeout_s=60),
            )
            return len(result.get("batchItemFailures", []))
        finally:
            ended = time.monotonic_ns()
            with lock:
                intervals.append((started, ended))

    def sender(chunk: list[Any]) -> None:
        ready.wait()
        for item in chunk:
            status = one(item)
            for _ in range(RETRIES):
                if kind != "http" or status != 503:
                    break
                with lock:
                    retried[0] += 1
                time.sleep(0.05)  # the provider's retry comes later; this only yields to the holder
                status = one(item)
            with lock:
                statuses.append(status)

    workers = [threading.Thread(target=sender, args=(chunk,)) for chunk in _split(items, threads)]
    for w in workers:
        w.start()
    barrier.wait(timeout=120)  # every process has its handler loaded and its threads waiting
    ready.wait()
    for w in workers:
        w.join()
    return statuses, retried[0], intervals


def _storm(env: dict[str, str], function: str, kind: str, items: list[Any]) -> StormResult:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(PROCESSES)
        arg_sets = [(env, function, kind, chunk, barrier, THREADS) for chunk in _split(items, PROCESSES)]
        meter.current().spawn(PROCESSES)
        results = run_parallel(_storm_child, arg_sets, PROCESSES)
    statuses = [s for r in results for s in r[0]]
    in_flight = meter.max_overlap([iv for r in results for iv in r[2]])
    meter.current().overlap(in_flight)
    return StormResult(statuses, sum(r[1] for r in results), in_flight)


def http_storm(
    env: dict[str, str], function: str, request: tuple[str, str, bytes, dict[str, str]], copies: int = COPIES
) -> StormResult:
    """``copies`` identical requests to the real handler from PROCESSES x THREADS senders released together."""
    return _storm(env, function, "http", [request] * copies)


def worker_storm(
    env: dict[str, str], message: str, copies: int = COPIES, function: str = "EventWorkerFunction"
) -> StormResult:
    """``copies`` identical queue messages (an SQS batch of one each) handed to the real worker at once."""
    return _storm(env, function, "sqs", [message] * copies)


def run_counted(fn: Any, arg_sets: list[tuple[Any, ...]], processes: int) -> list[Any]:
    """``tests.procs.run_parallel``, with the processes it spawns counted for the proof's row."""
    meter.current().spawn(min(processes, len(arg_sets)))
    return run_parallel(fn, arg_sets, processes)


# Offsets (seconds) of re-deliveries across a 24-hour dedup window, and one just past it.
SPREAD_HOURS = (0.0, 0.01, 1.0, 4.0, 12.0, 23.9, 24.5)


def spread(seconds: float) -> list[float]:
    return [time.time() + h * 3600 for h in SPREAD_HOURS if h * 3600 <= seconds] + [time.time() + seconds + 1800]


__all__ = ["COPIES", "PROCESSES", "THREADS", "StormResult", "http_storm", "run_counted", "spread", "worker_storm"]
