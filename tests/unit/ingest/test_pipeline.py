"""WebhookIngest.accept with keys another invocation holds, and SQS refusing part of a batch (no network:
an in-memory deduper and queue stand in for DynamoDB and SQS; the moto versions are in tests/functional)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from exactly_once.core.errors import ServiceUnavailableError
from exactly_once.core.events import InboundEvent
from exactly_once.core.telemetry import Metric, counters
from exactly_once.ingest.adapters.base import Split, WebhookAdapter
from exactly_once.ingest.apigw import Request
from exactly_once.ingest.dedup import Reservation
from exactly_once.ingest.pipeline import WebhookIngest


class _Adapter(WebhookAdapter):
    provider = "p"

    def authenticate(self, request: Request) -> None:
        pass

    def split(self, request: Request) -> Split:
        return Split()


class _Deduper:
    """The table as a dict: key -> "INPROGRESS" | "COMPLETED"; a missing key is free."""

    def __init__(self, held: dict[str, str] | None = None) -> None:
        self.records: dict[str, str] = dict(held or {})
        self.reads = 0
        self.lock = threading.Lock()

    def reserve_many(self, keys: Sequence[str], remaining_ms: int | None) -> Iterator[Reservation]:
        for key in keys:
            with self.lock:
                status = self.records.get(key)
                if status is None:
                    self.records[key] = "INPROGRESS"
                    yield Reservation.NEW
                else:
                    yield Reservation.IN_PROGRESS if status == "INPROGRESS" else Reservation.DUPLICATE

    def complete_many(self, keys: Sequence[str], result: dict[str, Any]) -> None:
        with self.lock:
            self.records.update(dict.fromkeys(keys, "COMPLETED"))

    def release(self, key: str, exc: Exception) -> None:
        with self.lock:
            self.records.pop(key, None)

    def state_many(self, keys: Sequence[str]) -> list[Reservation | None]:
        with self.lock:
            self.reads += 1
            states = [self.records.get(key) for key in keys]
        return [
            None if s is None else Reservation.IN_PROGRESS if s == "INPROGRESS" else Reservation.DUPLICATE
            for s in states
        ]


class _Queue:
    def __init__(self, refuse: set[str] | None = None) -> None:
        self.sent: list[InboundEvent] = []
        self.refuse = refuse or set()

    def send(self, events: Sequence[InboundEvent]) -> list[InboundEvent]:
        self.sent.extend(e for e in events if e.key not in self.refuse)
        return [e for e in events if e.key in self.refuse]


def _ingest(deduper: _Deduper, queue: _Queue | None = None, **kw: Any) -> WebhookIngest:
    return WebhookIngest(_Adapter(), deduper, queue or _Queue(), 1 << 20, **kw)  # type: ignore[arg-type]


def _event(key: str) -> InboundEvent:
    return InboundEvent("p", key, "p:g", "created", {"key": key})


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    seen: dict[str, float] = {}
    monkeypatch.setattr(
        counters, "incr", lambda provider, name, value=1: seen.update({name: seen.get(name, 0) + value})
    )
    return seen


def test_a_key_whose_holder_completes_during_the_wait_is_a_duplicate(metrics):
    deduper = _Deduper({"p:held": "INPROGRESS"})
    threading.Timer(0.15, deduper.complete_many, (["p:held"], {})).start()  # the concurrent copy finishes
    queue = _Queue()
    assert _ingest(deduper, queue).accept([_event("p:new"), _event("p:held")], 10_000) == (1, 1)
    assert [e.key for e in queue.sent] == ["p:new"]
    assert metrics == {Metric.ACCEPTED: 1, Metric.DUP_INGEST: 1}


def test_a_key_still_held_after_the_wait_is_a_503_after_the_fresh_events_were_queued(metrics):
    deduper = _Deduper({"p:held": "INPROGRESS"})  # its holder died between dedup and SendMessageBatch
    queue = _Queue()
    began = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as raised:
        _ingest(deduper, queue, in_progress_wait_ms=300).accept([_event("p:new"), _event("p:held")], 10_000)
    waited = time.monotonic() - began
    assert raised.value.status == 503 and raised.value.code == "in_progress"
    assert "processed by another delivery" in raised.value.message
    assert 0.3 <= waited < 1.5 and deduper.reads >= 3  # polled with backoff, within the bound (0.3 s)
    # the fresh event is queued and completed: the provider's retry finds it a duplicate
    assert [e.key for e in queue.sent] == ["p:new"] and deduper.records["p:new"] == "COMPLETED"
    assert metrics == {Metric.ACCEPTED: 1}  # no duplicate counted for the held key


def test_a_record_released_by_its_failed_holder_is_a_503_at_once():
    deduper = _Deduper({"p:held": "INPROGRESS"})
    threading.Timer(0.05, deduper.release, ("p:held", RuntimeError())).start()
    began = time.monotonic()
    with pytest.raises(ServiceUnavailableError):
        _ingest(deduper, in_progress_wait_ms=5000).accept([_event("p:held")], 60_000)
    assert time.monotonic() - began < 1.0  # no point waiting for a record that is gone


def test_the_wait_ends_before_the_invocation_deadline_minus_the_margin():
    deduper = _Deduper({"p:held": "INPROGRESS"})
    ingest = _ingest(deduper, in_progress_wait_ms=5000, deadline_margin_ms=500)
    began = time.monotonic()
    with pytest.raises(ServiceUnavailableError):
        ingest.accept([_event("p:held")], 700)  # 700 ms left: 200 ms to wait at most, not 5 s
    assert time.monotonic() - began < 1.0


def test_without_a_wait_a_held_key_is_checked_once():
    deduper = _Deduper({"p:held": "INPROGRESS", "p:done": "COMPLETED"})
    with pytest.raises(ServiceUnavailableError):
        _ingest(deduper, in_progress_wait_ms=0).accept([_event("p:held")], None)
    assert deduper.reads == 1


def test_events_queued_before_a_partial_sqs_failure_are_counted_accepted(metrics):
    deduper = _Deduper()
    queue = _Queue(refuse={"p:b"})
    with pytest.raises(ServiceUnavailableError):
        _ingest(deduper, queue).accept([_event("p:a"), _event("p:b"), _event("p:c")], 10_000)
    assert metrics == {Metric.ACCEPTED: 2}
    assert deduper.records == {"p:a": "COMPLETED", "p:c": "COMPLETED"}  # the refused one was released
