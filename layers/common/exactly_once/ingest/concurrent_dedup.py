"""Ingest dedup for batched deliveries: the per-event DynamoDB writes of one POST run concurrently.

Meta batches up to 1000 updates per POST and expects a median answer under 250 ms. One
conditional write per update in sequence makes a 100-update POST take 100 round trips to
reserve and 100 more to complete; a small thread pool overlaps them. Each write is still its
own conditional PutItem/UpdateItem, so the dedup guarantee is the same as in IngestDeduper.

Powertools' local cache (an OrderedDict LRU) is not safe to touch from several threads at
once, so this deduper gives its persistence layer a locked one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.shared.cache_dict import LRUDict

from exactly_once.core.telemetry import logger
from exactly_once.ingest.dedup import IngestDeduper, Reservation

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# botocore keeps 10 connections per client by default: more threads would only queue for them.
DEFAULT_WORKERS = 10


class _LockedLRU(LRUDict):
    """Powertools' LRUDict, one thread at a time (its get-then-move_to_end is two steps)."""

    def __init__(self, max_items: int) -> None:
        self._lock = threading.RLock()
        super().__init__(max_items=max_items)  # type: ignore[no-untyped-call]

    def __getitem__(self, key: Any) -> Any:
        with self._lock:
            return super().__getitem__(key)  # type: ignore[no-untyped-call]

    def __setitem__(self, key: Any, value: Any) -> None:
        with self._lock:
            super().__setitem__(key, value)  # type: ignore[no-untyped-call]

    def __delitem__(self, key: Any) -> None:
        with self._lock:
            super().__delitem__(key)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return super().__contains__(key)

    def get(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return super().get(key, *args, **kwargs)  # type: ignore[no-untyped-call]


class ConcurrentDeduper(IngestDeduper):
    def __init__(
        self,
        table_name: str,
        *,
        key_prefix: str,
        window_seconds: int,
        client: DynamoDBClient | None = None,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        super().__init__(table_name, key_prefix=key_prefix, window_seconds=window_seconds, client=client)
        self._workers = max(1, workers)
        cache = getattr(self._layer, "_cache", None)
        if isinstance(cache, LRUDict):
            self._layer._cache = _LockedLRU(cache.max_items)

    def reserve_many(self, keys: Sequence[str], remaining_ms: int | None) -> Iterator[Reservation]:
        """Reserve every key concurrently; on any failure, release what this call reserved, then raise."""
        if len(keys) <= 1 or self._workers == 1:
            return super().reserve_many(keys, remaining_ms)

        def attempt(key: str) -> Reservation | Exception:
            try:
                return self.reserve(key, remaining_ms)
            except Exception as exc:  # collected: every write is settled before the first error is raised
                return exc

        with ThreadPoolExecutor(max_workers=min(self._workers, len(keys))) as pool:
            results = list(pool.map(attempt, keys))
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            for key, result in zip(keys, results, strict=True):
                if result is Reservation.NEW:
                    self._release_quietly(key, errors[0])
            raise errors[0]
        return iter([r for r in results if isinstance(r, Reservation)])

    def complete_many(self, keys: Sequence[str], result: dict[str, Any]) -> None:
        if len(keys) <= 1 or self._workers == 1:
            super().complete_many(keys, result)
            return
        with ThreadPoolExecutor(max_workers=min(self._workers, len(keys))) as pool:
            # list(): raise the first failure, after every write has been tried
            list(pool.map(lambda key: self.complete(key, result), keys))

    def state_many(self, keys: Sequence[str]) -> list[Reservation | None]:
        if len(keys) <= 1 or self._workers == 1:
            return super().state_many(keys)
        with ThreadPoolExecutor(max_workers=min(self._workers, len(keys))) as pool:
            return list(pool.map(self.state, keys))  # raises the first failure, after every read was tried

    def _release_quietly(self, key: str, exc: Exception) -> None:
        try:
            self.release(key, exc)
        except Exception:  # the INPROGRESS record expires with the invocation: the retry still gets in
            logger.warning("could not release dedup record", extra={"key": key})
