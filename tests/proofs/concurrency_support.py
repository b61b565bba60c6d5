"""Storms: the same delivery many times at once from several spawned processes, and spread over a window."""

from __future__ import annotations

import time
from typing import Any

from tests.procs import deliver, run_parallel, work
from tests.proofs import meter

PROCESSES = 4
COPIES = 100


def http_storm(
    env: dict[str, str], function: str, request: tuple[str, str, bytes, dict[str, str]], copies: int = COPIES
) -> list[int]:
    """``copies`` identical requests to the real handler, split across PROCESSES processes starting together."""
    per = [copies // PROCESSES + (1 if i < copies % PROCESSES else 0) for i in range(PROCESSES)]
    start = time.time() + 3  # every child imported and warm before the first request
    meter.current().spawn(PROCESSES)
    results = run_parallel(deliver, [(env, function, [request] * n, start) for n in per], PROCESSES)
    return [s for statuses in results for s in statuses]


def worker_storm(env: dict[str, str], message: str, copies: int = COPIES, function: str = "EventWorkerFunction") -> int:
    """``copies`` identical queue messages handed to the real worker from PROCESSES processes at once; failures."""
    per = [copies // PROCESSES + (1 if i < copies % PROCESSES else 0) for i in range(PROCESSES)]
    start = time.time() + 3
    meter.current().spawn(PROCESSES)
    return sum(run_parallel(work, [(env, [message] * n, start, function) for n in per], PROCESSES))


# Offsets (seconds) of re-deliveries across a 24-hour dedup window, and one just past it.
SPREAD_HOURS = (0.0, 0.01, 1.0, 4.0, 12.0, 23.9, 24.5)


def spread(seconds: float) -> list[float]:
    return [time.time() + h * 3600 for h in SPREAD_HOURS if h * 3600 <= seconds] + [time.time() + seconds + 1800]


def run_counted(fn: Any, arg_sets: list[tuple[Any, ...]], processes: int) -> list[Any]:
    """``tests.procs.run_parallel``, with the processes it spawns counted for the proof's row."""
    meter.current().spawn(min(processes, len(arg_sets)))
    return run_parallel(fn, arg_sets, processes)


__all__ = ["Any", "http_storm", "run_counted", "spread", "worker_storm"]
