"""Hostile-input corpora: each case is one request to a provider's real ingest handler and what must happen.

For every case: the expected status, never a 5xx, a JSON ``{"error": ...}`` body on every 4xx, nothing
queued unless the request authenticated, and every authenticated event settled (event log or quarantine),
never parked in a dead-letter queue.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devstack.lambda_runtime import LambdaContext, apigw_event, function_timeout, http_response
from tests.harness import Stack
from tests.proofs.crash_support import dlq_depth


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    status: int | tuple[int, ...]
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    query: str = ""
    #: events this request must put on the queue (0 for anything unauthenticated, a replay or a handshake)
    queued: int = 0
    #: ``queued`` is the exact number (the default: an authentic delivery answered 2xx must be queued, or it
    #: is lost); False makes it a ceiling, only for a case whose outcome legitimately varies (say why there)
    queued_exactly: bool = True
    #: the raw API Gateway event, changed after it is built (base64 flags, missing parts)
    tweak: Callable[[dict[str, Any]], None] | None = None
    #: an extra check on (status, headers, body)
    check: Callable[[int, dict[str, str], bytes], bool] | None = None


@dataclass
class CorpusResult:
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    queued: int = 0
    settled: int = 0
    failures: list[str] = field(default_factory=list)


def _settled(db: Any) -> int:
    log = db.execute("SELECT coalesce(sum(deliveries), 0) FROM event_log").fetchone()[0]
    quarantined = db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    return int(log) + int(quarantined)


def run_corpus(stack: Stack, db: Any, function: str, path: str, cases: list[Case]) -> CorpusResult:
    """Every case against the real handler; then the worker drains what was accepted and all must settle."""
    handler = stack.handler(function)
    result = CorpusResult()
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    settled_before, parked_before = _settled(db), dlq_depth(stack)
    for case in cases:
        result.cases += 1
        url = f"http://127.0.0.1:3000{path}" + (f"?{case.query}" if case.query else "")
        event = apigw_event(case.method, url, case.body, case.headers)
        if case.tweak:
            case.tweak(event)
        context = LambdaContext(function_name=function, timeout_s=function_timeout(function))
        depth_before = stack.queue_depth("EventsQueue")
        try:
            status, headers, data = http_response(handler(event, context))
        except Exception as exc:  # an unhandled exception is a 5xx from API Gateway
            result.failures.append(f"{case.name}: handler raised {type(exc).__name__}: {exc}"[:300])
            continue
        result.statuses[status] = result.statuses.get(status, 0) + 1
        expected = case.status if isinstance(case.status, tuple) else (case.status,)
        problems = []
        if status not in expected:
            problems.append(f"status {status}, expected {expected}: {data[:200]!r}")
        if status >= 500:
            problems.append("5xx")
        if status >= 400:
            try:
                error = json.loads(data).get("error")
            except ValueError:
                error = None
            if not error or not headers.get("content-type", "").startswith("application/json"):
                problems.append(f"4xx without a JSON error body: {data[:120]!r}")
        if case.check and not case.check(status, headers, data):
            problems.append(f"check failed: {headers} {data[:200]!r}")
        queued = stack.queue_depth("EventsQueue") - depth_before
        # exact by default: an accepted event not queued is lost (a refused one may still queue a quarantine event)
        due = case.queued
        if queued > due:
            problems.append(f"{queued} events queued, at most {due} allowed (answered {status})")
        elif case.queued_exactly and queued != due:
            problems.append(
                f"{queued} events queued, expected exactly {due} (answered {status}): an accepted event lost"
            )
        result.queued += max(queued, 0)
        result.failures.extend(f"{case.name}: {p}" for p in problems)
    # The worker settles every accepted event: in the event log (effect, duplicate, ignored) or in quarantine.
    stack.drain()
    result.settled = _settled(db) - settled_before
    # 0 lost: every event an authenticated 2xx put on the queue settled (ingest may settle more itself, by
    # quarantining a delivery it could not queue, so this is a floor; each case's queue count above is exact)
    if result.settled < result.queued:
        result.failures.append(f"{result.queued} events queued but only {result.settled} settled")
    if stack.queue_depth("EventsQueue") or dlq_depth(stack) > parked_before:
        result.failures.append("events left on the queue or parked in the dead-letter queue")
    return result
