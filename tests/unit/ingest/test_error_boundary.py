"""The error boundary: the deduper, the events queue and the database raise the library's errors (carrying the
cause); only the edges (the ingest pipeline, the API handlers) turn them into HTTP answers, the same as before."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from devstack.lambda_runtime import apigw_event
from exactly_once.core import db
from exactly_once.core.errors import (
    DatabaseUnavailableError,
    DedupUnavailableError,
    HttpError,
    QueueUnavailableError,
)
from exactly_once.core.events import InboundEvent
from exactly_once.core.fifo import EventQueue
from exactly_once.ingest.adapters.base import Split, WebhookAdapter
from exactly_once.ingest.apigw import Request
from exactly_once.ingest.dedup import Reservation
from exactly_once.ingest.pipeline import WebhookIngest

_CAUSE = EndpointConnectionError(endpoint_url="https://aws.example.invalid")


class _Adapter(WebhookAdapter):
    provider = "p"

    def authenticate(self, request: Request) -> None:
        pass

    def split(self, request: Request) -> Split:
        return Split(events=[InboundEvent("p", f"p:{k}", "p:g", "created", {}) for k in json.loads(request.raw_body)])


class _Deduper:
    def __init__(self, fail: str = "", held: Sequence[str] = ()) -> None:
        self.fail, self.held = fail, set(held)
        self.released: list[str] = []

    def reserve_many(self, keys: Sequence[str], remaining_ms: int | None) -> Iterator[Reservation]:
        for key in keys:
            if self.fail == "reserve" and key == keys[-1]:
                raise DedupUnavailableError("dedup store unavailable", _CAUSE)
            yield Reservation.IN_PROGRESS if key in self.held else Reservation.NEW

    def complete_many(self, keys: Sequence[str], result: dict[str, Any]) -> None:
        pass

    def release(self, key: str, exc: Exception) -> None:
        self.released.append(key)
        if self.fail == "release":
            raise DedupUnavailableError("dedup store unavailable", _CAUSE)

    def state_many(self, keys: Sequence[str]) -> list[Reservation | None]:
        raise DedupUnavailableError("dedup store unavailable", _CAUSE)


class _Queue:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def send(self, events: Sequence[InboundEvent]) -> list[InboundEvent]:
        if self.fail:
            raise QueueUnavailableError("events queue unavailable", _CAUSE)
        return []


def _post(deduper: _Deduper, queue: _Queue, keys: list[str]) -> dict[str, Any]:
    ingest = WebhookIngest(_Adapter(), deduper, queue, 1 << 20, in_progress_wait_ms=0)  # type: ignore[arg-type]
    event = apigw_event(
        "POST", "https://x.example/webhooks/p", json.dumps(keys).encode(), {"content-type": "application/json"}
    )
    return ingest.handle(event)


def _answer(response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return response["statusCode"], json.loads(response["body"])


def test_a_dedup_failure_is_the_same_503_and_releases_what_was_reserved():
    deduper = _Deduper(fail="reserve")
    answer = _answer(_post(deduper, _Queue(), ["a", "b", "c"]))
    assert answer == (503, {"error": "unavailable", "message": "dedup store unavailable, retry later"})
    assert deduper.released == ["p:a", "p:b"]


def test_a_queue_failure_is_the_same_503_and_releases_every_reserved_key():
    deduper = _Deduper()
    answer = _answer(_post(deduper, _Queue(fail=True), ["a", "b"]))
    assert answer == (503, {"error": "unavailable", "message": "queue unavailable, retry later"})
    assert deduper.released == ["p:a", "p:b"]


def test_a_failed_release_is_logged_not_raised_and_the_answer_is_still_the_503():
    deduper = _Deduper(fail="release")
    answer = _answer(_post(deduper, _Queue(fail=True), ["a"]))
    assert answer == (503, {"error": "unavailable", "message": "queue unavailable, retry later"})


def test_a_dedup_failure_while_polling_a_held_key_is_the_same_503():
    answer = _answer(_post(_Deduper(held=["p:a"]), _Queue(), ["a"]))
    assert answer == (503, {"error": "unavailable", "message": "dedup store unavailable, retry later"})


def test_the_events_queue_raises_queue_unavailable_carrying_the_botocore_error():
    class Down:
        def send_message_batch(self, **_: Any) -> dict[str, Any]:
            raise _CAUSE

    with pytest.raises(QueueUnavailableError) as raised:
        EventQueue("url", Down()).send([InboundEvent("p", "p:a", "p:g", "created", {})])  # type: ignore[arg-type]
    assert raised.value.cause is _CAUSE and raised.value.__cause__ is _CAUSE
    assert not isinstance(raised.value, HttpError)


def test_a_database_that_cannot_be_reached_raises_database_unavailable_not_an_http_answer():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(DatabaseUnavailableError) as raised:
        db.connect(f"postgresql://postgres@127.0.0.1:{closed}/nowhere")
    assert not isinstance(raised.value, HttpError)
    assert raised.value.message == "database unavailable" and raised.value.cause is raised.value.__cause__
