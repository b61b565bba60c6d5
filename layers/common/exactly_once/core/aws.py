"""boto3 clients built once per container, with tight timeouts (a webhook answer has a 3 s budget).

boto3 is imported when the first client is built, not with this module (issue 17): a function whose
requests never reach AWS (the send worker, the event worker but for a throttled Graph event) never pays
for it, and one that does pays at the same moment as before (its client, at init or on first use).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from exactly_once.core import faults

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient


@functools.cache
def _config() -> Config:
    from botocore.config import Config

    return Config(
        connect_timeout=2,
        read_timeout=5,
        retries={"max_attempts": 3, "mode": "standard"},
        tcp_keepalive=True,
    )


@functools.cache
def _session() -> boto3.session.Session:
    import boto3

    return boto3.session.Session()


def client(service: str) -> Any:
    # AWS_ENDPOINT_URL (honoured by botocore) points these at the local stack's moto.
    # faults.install: inert unless the chaos harness set EO_FAULTS (never the template).
    return faults.install(_session().client(service, config=_config()), service)  # type: ignore[call-overload]


@functools.cache
def sqs() -> SQSClient:
    return client("sqs")  # type: ignore[no-any-return]


@functools.cache
def dynamodb() -> DynamoDBClient:
    return client("dynamodb")  # type: ignore[no-any-return]
