"""The test stack: the template's handlers in-process, on moto (serialised), Postgres and fake providers."""

from __future__ import annotations

import importlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from devstack.aws_local import LocalAws, boto_client
from devstack.fakes import FakeProviders
from devstack.lambda_runtime import (
    LambdaContext,
    apigw_event,
    function_timeout,
    http_response,
    load_handler,
)
from devstack.poller import QueuePoller
from exactly_once.flows.whatsapp.responders import ECHO

TEST_SECRETS = {
    "GRAPH_CLIENT_STATE": "test-client-state-0123456789",
    "GRAPH_CLIENT_ID": "test-client-id",
    "GRAPH_CLIENT_SECRET": "test-client-secret",
    "LIVEKIT_API_KEY": "APItestkey",
    "LIVEKIT_API_SECRET": "livekit-test-secret-0123456789abcdef0123456789",
    "LLM_API_KEY": "sk-test-llm",
    "LLM_MODEL": "test-analysis-model",
    "WHATSAPP_APP_SECRET": "whatsapp-app-secret-test",
    "WHATSAPP_VERIFY_TOKEN": "whatsapp-verify-token-test",
    "WHATSAPP_ACCESS_TOKEN": "whatsapp-access-token-test",
    "UNIPILE_API_KEY": "unipile-api-key-test",
    "UNIPILE_WEBHOOK_SECRET": "unipile-webhook-secret-test",
    "API_TOKEN": "local-api-token-test-0123456789abcdef",
    "STANDARD_WEBHOOK_SECRETS": '{"acme": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}',
    "STRIPE_WEBHOOK_SECRET": "whsec_stripe_test_secret",
    "GITHUB_WEBHOOK_SECRET": "github-webhook-secret-test",
    "SLACK_SIGNING_SECRET": "slack-signing-secret-test",
    "FORWARD_SIGNING_SECRET": "whsec_Zm9yd2FyZC1zaWduaW5nLXNlY3JldC10ZXN0",  # sends/forward.py
}


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


#: Pacing that never holds a send back (no spacing, no hours, no weekly cap): see sends/pacing.py.
UNPACED = {"daily_cap": 100000, "weekly_cap": None, "min_spacing_seconds": 0, "max_spacing_seconds": None,
           "work_start": None, "work_end": None, "work_days": [1, 2, 3, 4, 5, 6, 7]}  # fmt: skip


def stack_env(aws: LocalAws, fakes: FakeProviders, database_url: str) -> dict[str, str]:
    """Every variable the template gives its functions, resolved locally, plus test secrets and endpoints."""
    env: dict[str, str] = {}
    for function in aws.template.functions():
        env.update(aws.function_env(function))
    env.update(TEST_SECRETS)
    env.update(
        {
            "AWS_ENDPOINT_URL": aws.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "DATABASE_URL": database_url,
            "GRAPH_BASE_URL": f"{fakes.url}/graph/v1.0",
            "GRAPH_TOKEN_URL": f"{fakes.url}/graph/token",
            "LLM_BASE_URL": f"{fakes.url}/openai/v1",
            "WHATSAPP_BASE_URL": f"{fakes.url}/whatsapp",
            "UNIPILE_BASE_URL": f"{fakes.url}/unipile",
            "POWERTOOLS_METRICS_NAMESPACE": "ExactlyOnce",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "MAILBOX_ALLOW_PLAINTEXT_IMAP": "true",  # the dovecot on loopback speaks plain IMAP
            "WHATSAPP_RESPONDER": ECHO,  # the echo bot, by name: a deployed stack without one answers nobody
            # Tests send many messages per account at once; the pacing tests set LinkedIn's rules themselves.
            "SEND_PACING": json.dumps({"unipile": UNPACED, "whatsapp": UNPACED}),
        }
    )
    return env


@dataclass
class Stack:
    aws: LocalAws
    fakes: FakeProviders
    env: dict[str, str]
    _modules: dict[str, Any] = field(default_factory=dict)

    def handler(self, function: str) -> Any:
        """The function's handler, its module re-imported once per test (fresh warm-container state)."""
        if function not in self._modules:
            handler = load_handler(function, self.aws.template)
            module = importlib.reload(importlib.import_module(handler.__module__))
            props = self.aws.template.functions()[function]["Properties"]
            self._modules[function] = getattr(module, str(props["Handler"]).rpartition(".")[2])
        return self._modules[function]

    def invoke_http(
        self,
        function: str,
        method: str,
        url: str,
        body: bytes | str = b"",
        headers: dict[str, str] | None = None,
    ) -> HttpAnswer:
        raw = body.encode() if isinstance(body, str) else body
        context = LambdaContext(function_name=function, timeout_s=function_timeout(function, self.aws.template))
        result = self.handler(function)(apigw_event(method, url, raw, headers), context)
        status, hdrs, data = http_response(result)
        return HttpAnswer(status, hdrs, data)

    def sqs(self) -> Any:
        return boto_client("sqs", self.aws.endpoint)

    def queue_depth(self, queue: str) -> int:
        attrs = self.sqs().get_queue_attributes(
            QueueUrl=self.aws.physical[queue],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def poller(self, function: str, queue: str, **kwargs: Any) -> QueuePoller:
        return QueuePoller(
            sqs=self.sqs(),
            queue_url=self.aws.physical[queue],
            queue_arn=self.aws.arns[queue],
            handler=self.handler(function),
            function_name=function,
            timeout_s=function_timeout(function, self.aws.template),
            **kwargs,
        )

    def drain(self, function: str = "EventWorkerFunction", queue: str = "EventsQueue", rounds: int = 200) -> int:
        """Run the worker until the queue is empty (failed messages retried at once)."""
        poller = self.poller(function, queue)
        total = 0
        for _ in range(rounds):
            n = poller.drain()
            total += n
            if n == 0 and self.queue_depth(queue) == 0:
                return total
            time.sleep(0.05)
        return total

    def reset(self) -> None:
        sqs = self.sqs()
        for _name, url in self.aws.physical.items():
            if url.startswith("http"):
                # PurgeQueue is limited to once a minute: receive and delete instead.
                while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
                    sqs.delete_message_batch(
                        QueueUrl=url,
                        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)],
                    )
        ddb = boto_client("dynamodb", self.aws.endpoint)
        for table, res in self.aws.template.of_type("AWS::DynamoDB::Table").items():
            keys = [k["AttributeName"] for k in res["Properties"]["KeySchema"]]
            for page in ddb.get_paginator("scan").paginate(TableName=table):
                for item in page["Items"]:
                    ddb.delete_item(TableName=table, Key={k: item[k] for k in keys})
        self.fakes.reset()


def apply_env(env: dict[str, str]) -> None:
    os.environ.update(env)
