"""A duplicate storm: N unique provider events, each delivered several times, at a running stack.

Copies of one event go out back to back (so up to ``clients`` of them are in flight
at once), then, once the workers have settled the first wave, one more copy of each
arrives later, the way a provider retries a delivery it thinks failed. Every answer's
latency is the ack latency the provider would see. Effects are counted where they
happen (Postgres rows, calls at the fake providers), per unique event.
"""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import psycopg

Progress = Callable[[str, int, int], None]


#: The layers a duplicate can be stopped at, as FlowResult.summary() names them.
LAYERS = ("dynamodb_ingest", "sqs_fifo", "worker_event_log", "postgres")


@dataclass(frozen=True)
class Delivery:
    event: int  # index of the unique event
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    wave: str  # "burst" | "later"
    # Signs the body at the moment it is sent (its headers then replace ``headers``): a provider
    # that puts a timestamp in its signature signs every attempt anew, and a later copy signed at
    # the start of a long storm would fall out of the adapter's 5-minute window.
    sign: Callable[[bytes], dict[str, str]] | None = field(default=None, compare=False, repr=False)

    def signed_headers(self) -> dict[str, str]:
        return self.headers if self.sign is None else self.sign(self.body)


@dataclass
class Ack:
    delivery: Delivery
    status: int
    latency_s: float
    answer: Any
    attempts: int = 1
    headers: dict[str, str] = field(default_factory=dict)  # the answer's, lower-case names


class Flow(Protocol):
    """One provider's storm: how to sign a delivery and where its effects are counted."""

    name: str
    supports_naive: bool
    default_events: int  # unique events when the demo is not told (moto makes every flow cost)
    absent_layers: frozenset[str]  # layers of LAYERS this flow does not have ("n/a" in the table)

    def unavailable(self, routes: set[str]) -> str | None: ...

    def prepare(self, client: StormClient, n: int) -> None: ...

    def deliveries(self, n: int, copies: int, naive: bool) -> list[Delivery]: ...

    def event_keys(self, n: int) -> list[str]:
        """The event_log keys a worker settles (provider = ``name``); [] for a flow without an event log."""
        ...

    def effects(self, conn: psycopg.Connection[Any], n: int, naive: bool) -> list[int]: ...


class StormClient:
    """HTTP/1.1 keep-alive connections, one per client thread."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return conn

    def connect(self) -> None:
        """Open this thread's connection now, so that the first request's latency is not the TCP handshake's."""
        conn = self._conn()
        if conn.sock is None:
            try:
                conn.connect()
            except OSError:
                conn.close()  # the first request connects again, and reports what fails

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        status, data, _ = self.exchange(method, path, body, headers)
        return status, data

    def exchange(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, headers with lower-case names) of one request."""
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request(method, path, body=body, headers=headers or {})
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, payload: Any = None) -> Any:
        body = b"" if payload is None else json.dumps(payload).encode()
        status, data = self.request(method, path, body, {"content-type": "application/json"})
        if status >= 400:
            raise RuntimeError(f"{method} {path}: {status} {data[:200]!r}")
        return json.loads(data) if data else None


def send_all(
    client: StormClient, deliveries: list[Delivery], clients: int, progress: Progress | None = None, label: str = ""
) -> list[Ack]:
    """Send every delivery with ``clients`` concurrent connections; retry 5xx/429 like a provider.

    Each client thread connects before it takes its first delivery: the ack latency is a
    request's on an open keep-alive connection, as a provider's delivery pool sees it, not
    the time 32 simultaneous TCP handshakes spend in the local gateway's accept queue.
    """
    acks: list[Ack] = []
    lock = threading.Lock()
    done = [0]

    def one(d: Delivery) -> Ack:
        started = time.perf_counter()
        status, data = 0, b""
        headers: dict[str, str] = {}
        attempts = 0
        for attempts in range(1, 6):
            try:
                status, data, headers = client.exchange(d.method, d.path, d.body, d.signed_headers())
            except (http.client.HTTPException, OSError):
                status, data, headers = 599, b"", {}
            if status < 500 and status != 429:
                break
            time.sleep(0.2 * attempts)
        latency = time.perf_counter() - started
        try:
            answer = json.loads(data) if data else None
        except ValueError:
            answer = data.decode("utf-8", "replace")
        ack = Ack(d, status, latency, answer, attempts, headers)
        with lock:
            acks.append(ack)
            done[0] += 1
            if progress:
                progress(label, done[0], len(deliveries))
        return ack

    with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="storm", initializer=client.connect) as pool:
        list(pool.map(one, deliveries))
    return acks


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


@dataclass
class FlowResult:
    flow: str
    mode: str  # "exactly-once" | "naive"
    unique_events: int
    deliveries: int
    accepted: int = 0
    dup_ingest: int = 0  # DynamoDB idempotency record (from the HTTP answers)
    dup_fifo: int = 0  # accepted at ingest, never reached a worker (SQS FIFO dedup id)
    dup_worker: int = 0  # a worker saw an already-settled event (event_log deliveries)
    dup_postgres: int = 0  # the claim, the lock or the unique constraint (event_log outcomes)
    effects_per_event: dict[int, int] = field(default_factory=dict)  # effects -> number of events
    extra_effects: int = 0  # effects beyond one per event: duplicates that got through
    lost: int = 0
    http_errors: int = 0
    absent_layers: list[str] = field(default_factory=list)  # layers the flow does not have
    seconds: float = 0.0
    settle_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "flow": self.flow,
            "mode": self.mode,
            "unique_events": self.unique_events,
            "deliveries": self.deliveries,
            "accepted": self.accepted,
            "duplicates_stopped": {
                "dynamodb_ingest": self.dup_ingest,
                "sqs_fifo": self.dup_fifo,
                "worker_event_log": self.dup_worker,
                "postgres": self.dup_postgres,
            },
            "effects_per_event": {str(k): v for k, v in sorted(self.effects_per_event.items())},
            "absent_layers": list(self.absent_layers),
            "extra_effects": self.extra_effects,
            "lost": self.lost,
            "http_errors": self.http_errors,
            "seconds": round(self.seconds, 2),
            "settle_seconds": round(self.settle_seconds, 2),
            "deliveries_per_s": round(self.deliveries / self.seconds, 1) if self.seconds else 0.0,
            "ack_ms": {
                "p50": round(percentile(lat, 50), 1),
                "p95": round(percentile(lat, 95), 1),
                "p99": round(percentile(lat, 99), 1),
                "mean": round(statistics.fmean(lat), 1) if lat else 0.0,
            },
        }


def answer_counts(ack: Ack) -> tuple[int, int, int]:
    """(accepted, duplicates stopped at ingest, duplicates stopped by Postgres) that one answer reports.

    Webhook ingest answers ``{"accepted", "duplicates", "rejected"}`` (Slack, whose answer body
    Slack would show to a user, in the ``x-exactly-once`` header); ``POST /sends`` answers
    ``created`` true (201, queued) or false (200: the key's row exists, the unique constraint held).
    """
    answer = ack.answer
    if isinstance(answer, dict) and "accepted" in answer:
        return int(answer.get("accepted") or 0), int(answer.get("duplicates") or 0), 0
    header = ack.headers.get("x-exactly-once")
    if header:
        parts = dict(p.partition("=")[::2] for p in header.split(";"))
        return int(parts.get("accepted") or 0), int(parts.get("duplicates") or 0), 0
    if isinstance(answer, dict) and isinstance(answer.get("created"), bool):
        return (1, 0, 0) if answer["created"] else (0, 0, 1)
    return 0, 0, 0


def layer_counts(conn: psycopg.Connection[Any], provider: str, keys: list[str]) -> tuple[int, int, int]:
    """(events a worker received, re-deliveries a worker stopped, duplicates Postgres stopped)."""
    from devstack.queries import q

    received = dup_worker = dup_postgres = 0
    for _key, outcome, deliveries in conn.execute(q("storm_event_log"), {"provider": provider, "keys": keys}):
        received += int(deliveries)
        dup_worker += int(deliveries) - 1
        if outcome in ("duplicate", "recovered") or str(outcome).startswith("duplicate"):
            dup_postgres += 1
    return received, dup_worker, dup_postgres


def run_storm(
    flow: Flow,
    base_url: str,
    database_url: str,
    *,
    n: int,
    copies: int,
    clients: int,
    naive: bool = False,
    settle_timeout: float = 180.0,
    progress: Progress | None = None,
) -> FlowResult:
    client = StormClient(base_url)
    flow.prepare(client, n)
    deliveries = flow.deliveries(n, copies, naive)
    burst = [d for d in deliveries if d.wave == "burst"]
    later = [d for d in deliveries if d.wave == "later"]
    result = FlowResult(flow.name, "naive" if naive else "exactly-once", n, len(deliveries))
    result.absent_layers = sorted(flow.absent_layers)
    received = 0
    started = time.perf_counter()
    acks = send_all(client, burst, clients, progress, f"{flow.name} burst")
    if not any(200 <= a.status < 300 for a in acks):
        settle_timeout = 0.0  # nothing was accepted: nothing to wait for (the table shows the errors)
    with psycopg.connect(database_url, autocommit=True) as conn:
        settled_at = _settle(flow, conn, n, naive, settle_timeout, progress)
        acks += send_all(client, later, clients, progress, f"{flow.name} later")
        result.settle_seconds = _settle(flow, conn, n, naive, settle_timeout, progress, final=True) or settled_at
        result.seconds = time.perf_counter() - started
        effects = flow.effects(conn, n, naive)
        keys = [] if naive else flow.event_keys(n)
        if keys:
            _wait_keys(conn, flow.name, keys, settle_timeout)
            received, result.dup_worker, result.dup_postgres = layer_counts(conn, flow.name, keys)
    for ack in acks:
        result.latencies_ms.append(ack.latency_s * 1000)
        if not 200 <= ack.status < 300:
            result.http_errors += 1
        elif not naive:
            accepted, dup_ingest, dup_postgres = answer_counts(ack)
            result.accepted += accepted
            result.dup_ingest += dup_ingest
            result.dup_postgres += dup_postgres
    if keys:
        result.dup_fifo = max(0, result.accepted - received)
    for count in effects:
        result.effects_per_event[count] = result.effects_per_event.get(count, 0) + 1
    result.lost = sum(1 for c in effects if c == 0)
    result.extra_effects = sum(c - 1 for c in effects if c > 1)
    return result


def _wait_keys(conn: psycopg.Connection[Any], provider: str, keys: list[str], timeout: float) -> None:
    """Wait until a worker has settled every accepted key (the later wave's new ones included)."""
    from devstack.queries import q

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        rows = conn.execute(q("storm_event_log"), {"provider": provider, "keys": keys}).fetchall()
        if len(rows) >= len(keys):
            return
        time.sleep(0.2)


def _settle(
    flow: Flow,
    conn: psycopg.Connection[Any],
    n: int,
    naive: bool,
    timeout: float,
    progress: Progress | None,
    final: bool = False,
) -> float:
    """Wait until every event has its effect and the counts stop moving; return the seconds waited."""
    started = time.perf_counter()
    stable_since: float | None = None
    last: list[int] = []
    while time.perf_counter() - started < timeout:
        effects = flow.effects(conn, n, naive)
        done = sum(1 for c in effects if c > 0)
        if progress:
            progress(f"{flow.name} settling", done, n)
        if done == n and effects == last:
            stable_since = stable_since or time.perf_counter()
            # Late duplicates land after the first effect: wait for quiet, longer after the last wave.
            if time.perf_counter() - stable_since >= (2.0 if final else 0.5):
                break
        else:
            stable_since = None
        last = effects
        time.sleep(0.2)
    return time.perf_counter() - started
