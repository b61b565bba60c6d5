"""Outbound HTTP on urllib3 (already in the runtime through botocore): timeouts, bounded retries.

``idempotent=True`` retries connection errors, 429 and 5xx with backoff (GETs,
token requests). ``idempotent=False`` retries only a failed connect, when the
request surely never left; a read timeout becomes ProviderTimeoutError, an
unknown outcome the caller must reconcile, never a blind resend.

A provider's ``Retry-After`` is honoured in process only up to MAX_RETRY_AFTER_SECONDS: a
longer wait is not slept (it could outlive the caller's lease or the Lambda timeout); the
answer surfaces at once as a ProviderCallError carrying ``retry_after``, for the caller to
reschedule (the send worker) or to ask again on its next run (the reaper).
"""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any, Self

import urllib3
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util import Retry, Timeout

from exactly_once.core.errors import ProviderCallError, ProviderTimeoutError
from exactly_once.core.numbers import ascii_int

# The longest Retry-After slept between two tries of one request; beyond it, no retry here.
MAX_RETRY_AFTER_SECONDS = 5.0


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class HttpClient:
    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 10.0,
        retries: int = 2,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = headers or {}
        self._timeout = Timeout(connect=connect_timeout, read=read_timeout)
        self._retries = retries
        self._pool = urllib3.PoolManager(num_pools=4, maxsize=4)
        # The longest one attempt can take (connect, then read): what a caller must still have before starting.
        self.worst_attempt_s = connect_timeout + read_timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        fields: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool = True,
    ) -> HttpResult:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        all_headers = {**self._headers, **(headers or {})}
        if idempotent:
            retry: Retry = _CappedRetry(
                total=self._retries,
                backoff_factor=0.2,
                status_forcelist=(429, 500, 502, 503, 504),
                allowed_methods=None,
                raise_on_status=False,
                respect_retry_after_header=True,
            )
        else:
            retry = Retry(total=self._retries, connect=self._retries, read=0, status=0, other=0, redirect=0)
        # redirect=False: a 3xx is not followed. urllib3 drops Authorization on a cross-host redirect but
        # not our own credential headers (Unipile's X-API-KEY); no provider API here answers with one.
        kwargs: dict[str, Any] = {
            "headers": all_headers,
            "timeout": self._timeout,
            "retries": retry,
            "redirect": False,
        }
        if json_body is not None:
            kwargs["body"] = json.dumps(json_body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        elif body is not None:  # sent as given: bytes a caller signed (sends/forward.py)
            kwargs["body"] = body
        elif form is not None:
            kwargs["fields"] = form
            kwargs["encode_multipart"] = False
        elif fields is not None:
            kwargs["fields"] = fields
        try:
            response = self._pool.request(method, url, **kwargs)
        except urllib3.exceptions.MaxRetryError as exc:
            if isinstance(exc.reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError):
                raise ProviderCallError(0, f"could not connect: {exc.reason}") from exc
            raise ProviderTimeoutError(f"{method} {path}: {exc.reason}") from exc
        except (urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError) as exc:
            raise ProviderTimeoutError(f"{method} {path}: {exc}") from exc
        result = HttpResult(response.status, response.data, {k.lower(): v for k, v in response.headers.items()})
        if 300 <= response.status < 400:
            where = result.headers.get("location", "")[:200]
            raise ProviderCallError(response.status, f"redirect to {where!r} not followed (credentials stay here)")
        if response.status >= 400:
            retry_after = _retry_after(result.headers.get("retry-after"))
            raise ProviderCallError(response.status, result.body.decode("utf-8", "replace"), retry_after=retry_after)
        return result


class _CappedRetry(Retry):
    """urllib3's Retry, except that a Retry-After longer than the cap ends the retries.

    Raising MaxRetryError from ``increment`` with ``raise_on_status=False`` makes urllib3 return
    the response as it is (body intact), so the caller sees the provider's answer and its wait.
    """

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> Self:
        if response is not None and self.respect_retry_after_header:
            wait = _retry_after(response.headers.get("Retry-After"))
            if wait is not None and wait > MAX_RETRY_AFTER_SECONDS:
                raise MaxRetryError(_pool, url or "", ResponseError(f"Retry-After {wait:.0f} s is over the cap"))
        return super().increment(method, url, response, error, _pool, _stacktrace)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    seconds = ascii_int(value)  # delta-seconds is 1*DIGIT: no "nan", "1e9" or Unicode digits
    if seconds is not None:
        return float(seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())
