"""API Gateway HTTP API (payload v2) requests and responses."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exactly_once.core.errors import BadRequestError, HttpError


@dataclass(frozen=True)
class Request:
    """The parts of an HTTP API v2 event a webhook needs, with the body as received."""

    method: str
    path: str
    raw_body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str]
    path_params: Mapping[str, str] = field(default_factory=dict)
    source_ip: str = ""

    @classmethod
    def from_apigw_v2(cls, event: Mapping[str, Any]) -> Request:
        body = event.get("body") or ""
        if event.get("isBase64Encoded"):
            try:
                raw = base64.b64decode(body, validate=True)
            except ValueError as exc:
                raise BadRequestError("body is not valid base64") from exc
        else:
            raw = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else bytes(body)
        # HTTP API lower-cases header names already; do it again for hand-made events.
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        http = (event.get("requestContext") or {}).get("http") or {}
        query = {str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items()}
        path_params = {str(k): str(v) for k, v in (event.get("pathParameters") or {}).items()}
        if any(_UNSTORABLE.search(v) for v in (*query.values(), *path_params.values())):
            # A %00 in the URL arrives decoded: Postgres would refuse it later with a 500.
            raise BadRequestError("path or query holds NUL or an unpaired surrogate", code="invalid_parameter")
        return cls(
            method=str(http.get("method") or event.get("httpMethod") or "POST").upper(),
            path=str(http.get("path") or event.get("rawPath") or "/"),
            raw_body=raw,
            headers=headers,
            query=query,
            path_params=path_params,
            source_ip=str(http.get("sourceIp") or ""),
        )

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """Decode the body as JSON, or raise a 400 saying why."""
        try:
            # Decode first: json.loads on bytes would guess UTF-16/32 from a BOM; providers send UTF-8.
            text = self.raw_body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequestError("body is not UTF-8", code="invalid_encoding") from exc
        try:
            document = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        except RecursionError as exc:
            raise BadRequestError("body nests too deeply", code="invalid_json") from exc
        except ValueError as exc:
            raise BadRequestError(f"body is not valid JSON: {exc}", code="invalid_json") from exc
        _check_depth(document)
        # Only a \u escape can put NUL or a lone surrogate into a decoded string (raw ones fail above).
        return _clean_strings(document) if "\\u" in text.lower() else document


#: Deeper than any provider nests; recursive code further on (encoders, Powertools' hashing) would
#: otherwise overflow the stack at a few hundred levels and answer 500.
MAX_JSON_DEPTH = 64
# NUL cannot be stored in Postgres text or jsonb and a lone surrogate cannot be encoded as UTF-8 (SQS,
# the event log): either would make an authenticated event fail forever in the worker. Both become
# U+FFFD, the same way on every delivery, so dedup keys stay stable and the event is settled, not lost.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"number {literal[:20]} is out of range")
    return value


def _check_depth(document: Any) -> None:
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadRequestError(f"body nests deeper than {MAX_JSON_DEPTH} levels", code="invalid_json")
        if isinstance(value, dict):
            pending.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            pending.extend((v, depth + 1) for v in value)


def _clean_strings(value: Any) -> Any:
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_clean_strings(k): _clean_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_strings(v) for v in value]
    return value


def json_response(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": json.dumps(body, separators=(",", ":"), default=str),
    }


def text_response(status: int, text: str) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "text/plain; charset=utf-8"}, "body": text}


def error_response(exc: HttpError) -> dict[str, Any]:
    return json_response(exc.status, {"error": exc.code, "message": exc.message})
