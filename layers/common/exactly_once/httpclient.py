"""Outbound HTTP on urllib3 (already in the runtime through botocore): timeouts, bounded retries.

``idempotent=True`` retries connection errors, 429 and 5xx with backoff (GETs,
token requests). ``idempotent=False`` retries only a failed connect, when the
request surely never left; a read timeout becomes ProviderTimeoutError, an
unknown outcome the caller must reconcile, never a blind resend.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.util import Retry, Timeout

from exactly_once.errors import ProviderCallError, ProviderTimeoutError


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

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        fields: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool = True,
    ) -> HttpResult:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        all_headers = {**self._headers, **(headers or {})}
        if idempotent:
            retry = Retry(
                total=self._retries,
                backoff_factor=0.2,
                status_forcelist=(429, 500, 502, 503, 504),
                allowed_methods=None,
                raise_on_status=False,
                respect_retry_after_header=True,
            )
        else:
            retry = Retry(total=self._retries, connect=self._retries, read=0, status=0, other=0, redirect=0)
        kwargs: dict[str, Any] = {"headers": all_headers, "timeout": self._timeout, "retries": retry}
        if json_body is not None:
            kwargs["body"] = json.dumps(json_body).encode()
            all_headers.setdefault("Content-Type", "application/json")
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
        if response.status >= 400:
            retry_after = _retry_after(result.headers.get("retry-after"))
            raise ProviderCallError(response.status, result.body.decode("utf-8", "replace"), retry_after=retry_after)
        return result


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
