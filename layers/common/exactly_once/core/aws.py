"""boto3 clients built once per container, with tight timeouts (a webhook answer has a 3 s budget)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from exactly_once.core import faults

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"max_attempts": 3, "mode": "standard"},
    tcp_keepalive=True,
)


@functools.cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


def client(service: str) -> Any:
    # AWS_ENDPOINT_URL (honoured by botocore) points these at the local stack's moto.
    # faults.install: inert unless the chaos harness set EO_FAULTS (never the template).
    return faults.install(_session().client(service, config=_CONFIG), service)  # type: ignore[call-overload]


@functools.cache
def sqs() -> SQSClient:
    return client("sqs")  # type: ignore[no-any-return]


@functools.cache
def dynamodb() -> DynamoDBClient:
    return client("dynamodb")  # type: ignore[no-any-return]
