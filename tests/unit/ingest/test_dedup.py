"""IngestDeduper: one class, one key after another (workers=1) or a delivery's keys on a thread pool (workers>1).

No network: an in-memory DynamoDB client stands in for the table (the moto versions are in tests/functional).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from exactly_once.core.errors import DedupUnavailableError, ExactlyOnceError
from exactly_once.ingest.dedup import IngestDeduper, Reservation


class _Table:
    """The calls Powertools' DynamoDB layer makes, on a dict; ``down`` keys fail as if DynamoDB were unreachable."""

    def __init__(self, down: set[str] | None = None) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.down = down or set()
        self.calls: list[tuple[str, str]] = []
        self.threads: set[int] = set()
        self.lock = threading.Lock()

    def _key(self, name: str, key: dict[str, Any]) -> str:
        value = str(key["id"]["S"])
        with self.lock:
            self.calls.append((name, value))
            self.threads.add(threading.get_ident())
        if value in self.down:
            raise EndpointConnectionError(endpoint_url="https://dynamodb.example.invalid")
        time.sleep(0.01)  # a round trip: lets the pool overlap calls
        return value

    def put_item(self, TableName: str, Item: dict[str, Any], **_: Any) -> dict[str, Any]:
        key = self._key("put", Item)
        with self.lock:
            if key in self.items:
                error = {"Error": {"Code": "ConditionalCheckFailedException"}, "Item": self.items[key]}
                raise ClientError(error, "PutItem")  # type: ignore[arg-type]
            self.items[key] = dict(Item)
        return {}

    def update_item(self, TableName: str, Key: dict[str, Any], **kw: Any) -> dict[str, Any]:
        key = self._key("update", Key)
        with self.lock:
            self.items.setdefault(key, dict(Key)).update(
                {
                    "status": kw["ExpressionAttributeValues"][":status"],
                    "expiration": kw["ExpressionAttributeValues"][":expiry"],
                }
            )
        return {}

    def delete_item(self, TableName: str, Key: dict[str, Any], **_: Any) -> dict[str, Any]:
        key = self._key("delete", Key)
        with self.lock:
            self.items.pop(key, None)
        return {}

    def get_item(self, TableName: str, Key: dict[str, Any], **_: Any) -> dict[str, Any]:
        key = self._key("get", Key)
        with self.lock:
            item = self.items.get(key)
        return {"Item": item} if item is not None else {}


def _deduper(table: _Table, workers: int = 1) -> IngestDeduper:
    return IngestDeduper("table", key_prefix="p-ingest", window_seconds=60, client=table, workers=workers)  # type: ignore[arg-type]


def _hashed(deduper: IngestDeduper, key: str) -> str:
    return str(deduper._layer._get_hashed_idempotency_key({"key": key}))


@pytest.fixture(autouse=True)
def _region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_one_worker_keeps_powertools_local_cache_and_a_pool_turns_it_off():
    # Powertools' LRU cache is not thread-safe: with a pool it is off, not swapped for a private-attribute stand-in
    assert _deduper(_Table()).uses_local_cache
    assert not _deduper(_Table(), workers=10).uses_local_cache
    assert _deduper(_Table(), workers=0).workers == 1


@pytest.mark.parametrize("workers", [1, 8])
def test_reserve_complete_and_state_give_the_same_answers_with_one_worker_or_a_pool(workers):
    table = _Table()
    deduper = _deduper(table, workers)
    keys = [f"p:{i}" for i in range(20)]
    assert list(deduper.reserve_many(keys[:10], 60_000)) == [Reservation.NEW] * 10
    # a second delivery: its first ten are held by the first (not completed yet), the rest are new
    again = list(deduper.reserve_many(keys, 60_000))
    assert again == [Reservation.IN_PROGRESS] * 10 + [Reservation.NEW] * 10
    assert deduper.state_many(keys[:2]) == [Reservation.IN_PROGRESS] * 2
    deduper.complete_many(keys, {"queued": True})
    assert deduper.state_many(keys) == [Reservation.DUPLICATE] * 20
    assert list(deduper.reserve_many(keys, 60_000)) == [Reservation.DUPLICATE] * 20
    deduper.release(keys[0], RuntimeError("test"))
    assert deduper.state(keys[0]) is None


def test_a_pool_overlaps_one_deliverys_writes():
    table = _Table()
    list(_deduper(table, workers=8).reserve_many([f"p:{i}" for i in range(16)], 60_000))
    assert len(table.threads) > 1


def test_a_pool_that_fails_one_write_releases_what_it_reserved_then_raises_dedup_unavailable():
    table = _Table()
    deduper = _deduper(table, workers=8)
    table.down = {_hashed(deduper, "p:5")}
    keys = [f"p:{i}" for i in range(10)]
    with pytest.raises(DedupUnavailableError) as raised:
        list(deduper.reserve_many(keys, 60_000))
    # every write was tried, and the nine that succeeded were released: the provider's retry gets in whole
    assert {k for name, k in table.calls if name == "put"} == {_hashed(deduper, k) for k in keys}
    assert table.items == {}
    assert isinstance(raised.value.cause, EndpointConnectionError)
    assert isinstance(raised.value.__cause__, EndpointConnectionError)


def test_one_worker_stops_at_the_failed_write_and_leaves_the_later_keys_untouched():
    table = _Table()
    deduper = _deduper(table)
    table.down = {_hashed(deduper, "p:1")}
    reservations = deduper.reserve_many(["p:0", "p:1", "p:2"], 60_000)
    assert next(reservations) is Reservation.NEW
    with pytest.raises(DedupUnavailableError):
        next(reservations)
    assert _hashed(deduper, "p:2") not in {k for _, k in table.calls}


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize(
    "call",
    [
        lambda d: list(d.reserve_many(["p:a", "p:b"], 60_000)),
        lambda d: d.complete_many(["p:a", "p:b"], {"queued": True}),
        lambda d: d.state_many(["p:a", "p:b"]),
        lambda d: d.release("p:a", RuntimeError("test")),
    ],
    ids=["reserve", "complete", "state", "release"],
)
def test_dynamodb_errors_leave_the_deduper_as_a_library_error_carrying_the_cause(workers, call):
    table = _Table()
    deduper = _deduper(table, workers)
    table.down = {_hashed(deduper, "p:a")}
    with pytest.raises(DedupUnavailableError) as raised:
        call(deduper)
    assert isinstance(raised.value, ExactlyOnceError) and not hasattr(raised.value, "status")
    assert isinstance(raised.value.cause, EndpointConnectionError)
