"""core.faults: inert without EO_FAULTS; with it, injected AWS errors and lost answers at a seeded rate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ReadTimeoutError

from exactly_once.core import faults

ROOT = Path(__file__).resolve().parents[3]


class _Sent:
    """Stands in for the network: every request that left is counted and answered 200 ``{}``."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        self.requests += 1
        return AWSResponse(request.url, 200, {}, _Raw(b"{}"))


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Any:
        yield self.data


def _dynamodb(monkeypatch: pytest.MonkeyPatch, spec: dict[str, Any] | None) -> tuple[Any, _Sent]:
    if spec is None:
        monkeypatch.delenv("EO_FAULTS", raising=False)
    else:
        monkeypatch.setenv("EO_FAULTS", json.dumps(spec))
    client = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )  # no network: before-send answers
    sent = _Sent()
    client.meta.events.register("before-send", sent)
    return faults.install(client, "dynamodb"), sent


def _put(client: Any) -> Any:
    return client.put_item(TableName="t", Item={"id": {"S": "1"}})


def test_without_eo_faults_nothing_is_registered_and_every_call_goes_through(monkeypatch):
    client, sent = _dynamodb(monkeypatch, None)
    for _ in range(20):
        _put(client)
    assert sent.requests == 20


def test_a_throttle_is_refused_before_the_request_leaves(monkeypatch, tmp_path):
    client, sent = _dynamodb(monkeypatch, {"seed": 1, "rate": 1.0, "kinds": ["throttle"], "log": str(tmp_path)})
    with pytest.raises(ClientError) as refused:
        _put(client)
    assert refused.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert sent.requests == 0
    assert [p.read_text() for p in tmp_path.iterdir()] == ["throttle dynamodb PutItem\n"]


def test_a_500_is_an_internal_server_error(monkeypatch):
    client, _ = _dynamodb(monkeypatch, {"seed": 1, "rate": 1.0, "kinds": ["500"]})
    with pytest.raises(ClientError) as refused:
        _put(client)
    assert refused.value.response["Error"]["Code"] == "InternalServerError"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_a_lost_answer_is_a_timeout_after_the_request_was_applied(monkeypatch):
    client, sent = _dynamodb(monkeypatch, {"seed": 1, "rate": 1.0, "kinds": ["lost"]})
    with pytest.raises(ReadTimeoutError):
        _put(client)
    assert sent.requests == 1  # the write happened; only the answer is gone


def test_a_seed_replays_the_same_schedule_and_the_rate_holds(monkeypatch):
    monkeypatch.setenv("EO_FAULTS_STREAM", "3")
    spec = {"seed": 42, "rate": 0.2, "kinds": ["throttle", "500", "lost"]}
    first = [faults.Injector(spec, "sqs").draw() for _ in range(1)]
    one, two = faults.Injector(spec, "sqs"), faults.Injector(spec, "sqs")
    a, b = [one.draw() for _ in range(2000)], [two.draw() for _ in range(2000)]
    assert a == b and first[0] == a[0]
    assert 0.15 < sum(x is not None for x in a) / len(a) < 0.25
    other = faults.Injector({**spec, "seed": 43}, "sqs")
    assert [other.draw() for _ in range(2000)] != a


def test_the_template_never_sets_eo_faults():
    assert "EO_FAULTS" not in (ROOT / "template.yaml").read_text()
