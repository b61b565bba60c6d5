"""Ingest dedup: Powertools idempotency records on DynamoDB, one conditional write per event.

The pipeline needs the gap between "reserve" and "complete" to hold one
SendMessageBatch for the whole delivery, so it drives the Powertools persistence
layer's public steps (``save_inprogress``, ``save_success``, ``delete_record``)
instead of wrapping a function per event. A new event costs two writes, a
duplicate one write (the failed PutItem returns the old item), and, with one
worker, a duplicate already completed in this warm container none (the local cache).

The INPROGRESS record expires with the invocation (``remaining_ms``): if the
function dies between reserve and enqueue, the provider's retry gets through
once the invocation's deadline has passed. Until then ``state`` tells a retry
whether the holder completed the record (a duplicate) or still holds it (the
ingest pipeline then answers a retryable 503, never a 2xx that could lose it).

Batched deliveries (``workers`` > 1): Meta batches up to 1000 updates per POST and expects
a median answer under 250 ms. One conditional write per update in sequence makes a 100-update
POST take 100 round trips to reserve and 100 more to complete; a small thread pool overlaps
them. Each write is still its own conditional PutItem/UpdateItem, so the guarantee is the same.

Errors: a DynamoDB failure (botocore's ``BotoCoreError``/``ClientError``) leaves this module as a
``DedupUnavailableError`` carrying it; the pipeline decides what the provider hears.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyInvalidStatusError,
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from botocore.exceptions import BotoCoreError, ClientError

from exactly_once.core.errors import DedupUnavailableError
from exactly_once.core.telemetry import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Without a Lambda context (tests, the local stack) an in-progress reservation
# blocks duplicates this long, then lets a retry through.
DEFAULT_IN_PROGRESS_MS = 30_000
LOCAL_CACHE_ITEMS = 4096

_T = TypeVar("_T")


class Reservation(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"  # already enqueued
    IN_PROGRESS = "in_progress"  # another invocation holds it right now


class IngestDeduper:
    """Reserve, complete or release event keys in the idempotency table.

    ``workers``: 1 writes one key after another; more run a batch's writes on that many threads
    (botocore keeps 10 connections per client by default: more than 10 would only queue for them).
    """

    def __init__(
        self,
        table_name: str,
        *,
        key_prefix: str,
        window_seconds: int,
        client: DynamoDBClient | None = None,
        workers: int = 1,
    ) -> None:
        self._workers = max(1, workers)
        self._layer = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client)
        config = IdempotencyConfig(
            event_key_jmespath="key",
            expires_after_seconds=window_seconds,
            # Powertools' local cache (an LRU of completed records) is not thread-safe: its get-then-move
            # is two steps. With a thread pool it is off rather than swapped for a locked one behind
            # Powertools' back (a private attribute a release may rename). Nothing relies on it: the
            # guarantee comes from DynamoDB's conditional writes; the cache only saves one call for a
            # duplicate this warm container has already completed.
            use_local_cache=self._workers == 1,
            local_cache_max_items=LOCAL_CACHE_ITEMS,
            raise_on_no_idempotency_key=True,
            hash_function="sha256",
        )
        # The prefix is pinned: renaming the function or the stack must not forget every key.
        self._layer.configure(config, key_prefix=key_prefix)

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def uses_local_cache(self) -> bool:
        return bool(self._layer.use_local_cache)

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
        except (BotoCoreError, ClientError) as exc:
            raise DedupUnavailableError("dedup store unavailable", exc) from exc
        return Reservation.NEW

    def complete(self, key: str, result: dict[str, Any]) -> None:
        try:
            self._layer.save_success({"key": key}, result)
        except (BotoCoreError, ClientError) as exc:
            raise DedupUnavailableError("dedup store unavailable", exc) from exc

    def release(self, key: str, exc: Exception) -> None:
        try:
            self._layer.delete_record({"key": key}, exc)
        except (BotoCoreError, ClientError) as error:
            raise DedupUnavailableError("dedup store unavailable", error) from error

    def reserve_many(self, keys: Sequence[str], remaining_ms: int | None) -> Iterator[Reservation]:
        """Reservations for ``keys``, in order.

        One worker: lazily, one key after another (a failure leaves the later keys untouched).
        More: every key at once; on any failure, what this call reserved is released, then the first error raised.
        """
        if len(keys) <= 1 or self._workers == 1:
            return (self.reserve(key, remaining_ms) for key in keys)

        def attempt(key: str) -> Reservation | Exception:
            try:
                return self.reserve(key, remaining_ms)
            except Exception as exc:  # collected: every write is settled before the first error is raised
                return exc

        results = self._map(attempt, keys)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            for key, result in zip(keys, results, strict=True):
                if result is Reservation.NEW:
                    self._release_quietly(key, errors[0])
            raise errors[0]
        return iter([r for r in results if isinstance(r, Reservation)])

    def complete_many(self, keys: Sequence[str], result: dict[str, Any]) -> None:
        """Complete every key; the first failure is raised once every write has been tried (several workers)."""
        if len(keys) <= 1 or self._workers == 1:
            for key in keys:
                self.complete(key, result)
            return
        self._map(lambda key: self.complete(key, result), keys)

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
        except (BotoCoreError, ClientError) as exc:
            raise DedupUnavailableError("dedup store unavailable", exc) from exc
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
        if len(keys) <= 1 or self._workers == 1:
            return [self.state(key) for key in keys]
        return self._map(self.state, keys)  # raises the first failure, after every read was tried

    def _map(self, call: Callable[[str], _T], keys: Sequence[str]) -> list[_T]:
        """``call`` for every key on the thread pool, results in order; raises the first failure after all ran."""
        with ThreadPoolExecutor(max_workers=min(self._workers, len(keys))) as pool:
            return list(pool.map(call, keys))

    def _release_quietly(self, key: str, exc: Exception) -> None:
        try:
            self.release(key, exc)
        except Exception:  # the INPROGRESS record expires with the invocation: the retry still gets in
            logger.warning("could not release dedup record", extra={"key": key})
