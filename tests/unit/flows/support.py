"""Requests as API Gateway hands them to an adapter, and the 401 code an adapter refuses one with."""

from __future__ import annotations

import pytest

from devstack.lambda_runtime import apigw_event
from exactly_once.core.errors import UnauthorizedError
from exactly_once.ingest.apigw import Request

NOW = 1_795_334_400


def request(path: str, body: bytes, headers: dict[str, str]) -> Request:
    return Request.from_apigw_v2(apigw_event("POST", f"http://h{path}", body, headers))


def rejected(adapter, req: Request) -> str:
    with pytest.raises(UnauthorizedError) as info:
        adapter.authenticate(req)
    return info.value.code
