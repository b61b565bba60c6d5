"""Exceptions raised inside the library; handlers turn them into responses at the boundary."""

from __future__ import annotations


class ExactlyOnceError(Exception):
    """Base class of the library's own errors."""


class HttpError(ExactlyOnceError):
    """A request the webhook boundary answers with a 4xx/5xx and a JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class BadRequestError(HttpError):
    """The body or query is malformed."""

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(400, code, message)


class UnauthorizedError(HttpError):
    """The request is not authenticated (signature, token or clientState)."""

    def __init__(self, message: str, code: str = "unauthorized") -> None:
        super().__init__(401, code, message)


class ForbiddenError(HttpError):
    """A handshake with a wrong verify token."""

    def __init__(self, message: str, code: str = "forbidden") -> None:
        super().__init__(403, code, message)


class PayloadTooLargeError(HttpError):
    """The body is over the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "payload_too_large", f"body is larger than {limit} bytes")


class UnsupportedMediaTypeError(HttpError):
    """The content type is not one the provider sends."""

    def __init__(self, message: str) -> None:
        super().__init__(415, "unsupported_media_type", message)


class ServiceUnavailableError(HttpError):
    """A dependency (database, queue) is down: the provider should retry."""

    def __init__(self, message: str, code: str = "unavailable") -> None:
        super().__init__(503, code, message)


class DependencyUnavailableError(ExactlyOnceError):
    """A store or queue the library depends on did not answer, or refused: the same call may succeed later.

    The library raises these (never botocore's or psycopg's errors, never an HTTP answer); each edge
    (the ingest pipeline, an API handler) decides what the caller hears. ``cause`` is the original
    error, also chained as ``__cause__``.
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause


class DedupUnavailableError(DependencyUnavailableError):
    """The ingest idempotency table (DynamoDB) could not be read or written."""


class QueueUnavailableError(DependencyUnavailableError):
    """The events queue (SQS) refused or did not answer a SendMessageBatch."""


class DatabaseUnavailableError(DependencyUnavailableError):
    """Postgres could not be reached (connect failed)."""


class ConfigurationError(ExactlyOnceError):
    """A required setting or secret is missing: fail fast at init."""


class ProviderCallError(ExactlyOnceError):
    """An outbound HTTP call failed with a definite answer (4xx/5xx)."""

    def __init__(self, status: int, body: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"provider answered {status}: {body[:200]}")
        self.status = status
        self.body = body
        self.retry_after = retry_after


class ProviderTimeoutError(ExactlyOnceError):
    """An outbound HTTP call timed out or the connection broke: the outcome is unknown."""


class PermanentEventError(ExactlyOnceError):
    """An event that retrying cannot fix: it goes to quarantine with this reason."""


class RetryLaterError(ExactlyOnceError):
    """An event to settle later: the worker puts it back on the queue for ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
