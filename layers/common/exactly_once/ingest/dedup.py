"""Ingest dedup: Powertools idempotency records on DynamoDB, one conditional write per event.

The pipeline needs the gap between "reserve" and "complete" to hold one
SendMessageBatch for the whole delivery, so it drives the Powertools persistence
layer's public steps (``save_inprogress``, ``save_success``, ``delete_record``)
instead of wrapping a function per event. A new event costs two writes, a
duplicate one write (the failed PutItem returns the old item), and a duplicate
already completed in this warm container none (the local cache).

The INPROGRESS record expires with the invocation (``remaining_ms``): if the
function dies between reserve and enqueue, the provider's retry gets through
once the invocation's deadline has passed. Until then ``state`` tells a retry
whether the holder completed the record (a duplicate) or still holds it (the
ingest pipeline then answers a retryable 503, never a 2xx that could lose it).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyInvalidStatusError,
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Without a Lambda context (tests, the local stack) an in-progress reservation
# blocks duplicates this long, then lets a retry through.
DEFAULT_IN_PROGRESS_MS = 30_000


class Reservation(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"  # already enqueued
    IN_PROGRESS = "in_progress"  # another invocation holds it right now


class IngestDeduper:
    """Reserve, complete or release one event key in the idempotency table."""

    def __init__(
        self, table_name: str, *, key_prefix: str, window_seconds: int, client: DynamoDBClient | None = None
    ) -> None:
        self._layer = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client)
        config = IdempotencyConfig(
            event_key_jmespath="key",
            expires_after_seconds=window_seconds,
            use_local_cache=True,
            local_cache_max_items=4096,
            raise_on_no_idempotency_key=True,
            hash_function="sha256",
        )
        # The prefix is pinned: renaming the function or the stack must not forget every key.
        self._layer.configure(config, key_prefix=key_prefix)

    def reserve(self, key: str, remaining_ms: int | None) -> Reservation:
        try:
            self._layer.save_inprogress(
                {"key": key}, remaining_ms if remaining_ms is not None else DEFAULT_IN_PROGRESS_MS
            )
        except IdempotencyItemAlreadyExistsError as exc:
            old = exc.old_data_record
            if old is not None and old.status == "INPROGRESS":
                return Reservation.IN_PROGRESS
            return Reservation.DUPLICATE
        return Reservation.NEW

    def complete(self, key: str, result: dict[str, Any]) -> None:
        self._layer.save_success({"key": key}, result)

    def reserve_many(self, keys: Sequence[str], remaining_ms: int | None) -> Iterator[Reservation]:
        """Reserve keys in order (lazily: a failure leaves the later keys untouched)."""
        return (self.reserve(key, remaining_ms) for key in keys)

    def complete_many(self, keys: Sequence[str], result: dict[str, Any]) -> None:
        for key in keys:
            self.complete(key, result)

    def release(self, key: str, exc: Exception) -> None:
        self._layer.delete_record({"key": key}, exc)

    def state(self, key: str) -> Reservation | None:
        """Where a reservation held by another invocation stands now (one consistent read).

        DUPLICATE once its holder completed it; IN_PROGRESS while the holder may still complete it;
        None when it is gone: released after a failure, past the window, or past the holder's
        deadline (a retry can then reserve it). Powertools' local cache only ever holds completed
        records (never INPROGRESS ones), so a cache hit is a real completion and a miss reads the table.
        """
        try:
            record = self._layer.get_record({"key": key})
        except IdempotencyItemNotFoundError:
            return None
        if record is None:  # no key: cannot happen with raise_on_no_idempotency_key
            return None
        try:
            status = record.status  # EXPIRED once the window has passed
        except IdempotencyInvalidStatusError:
            return Reservation.IN_PROGRESS  # unknown: never take it for a completion
        if status == "COMPLETED":
            return Reservation.DUPLICATE
        if status != "INPROGRESS":
            return None
        deadline_ms = record.in_progress_expiry_timestamp
        if deadline_ms is not None and deadline_ms < int(time.time() * 1000):
            return None  # the holder's invocation is over: it will not complete it
        return Reservation.IN_PROGRESS

    def state_many(self, keys: Sequence[str]) -> list[Reservation | None]:
        return [self.state(key) for key in keys]
