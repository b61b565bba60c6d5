"""A Lambda SQS event source mapping, locally: receive, invoke, delete what succeeded.

Honours the batch size and ``ReportBatchItemFailures``; a failed message becomes
visible again after ``retry_delay`` (Lambda waits the queue's VisibilityTimeout;
locally that is shortened so a demo does not stall), and SQS itself moves it to
the DLQ after ``maxReceiveCount`` receives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devstack.lambda_runtime import Handler, LambdaContext, sqs_event


@dataclass
class QueuePoller:
    sqs: Any
    queue_url: str
    queue_arn: str
    handler: Handler
    function_name: str = "worker"
    batch_size: int = 10
    timeout_s: float = 60.0
    retry_delay: int = 0
    # Without ReportBatchItemFailures on the event source, Lambda ignores batchItemFailures:
    # the batch succeeded unless the invocation raised.
    report_failures: bool = True
    stats: dict[str, int] = field(default_factory=lambda: {"invocations": 0, "messages": 0, "failures": 0})

    def poll_once(self, wait_seconds: int = 0) -> int:
        received = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(self.batch_size, 10),
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
        )
        messages = received.get("Messages", [])
        if not messages:
            return 0
        self.stats["invocations"] += 1
        self.stats["messages"] += len(messages)
        context = LambdaContext(function_name=self.function_name, timeout_s=self.timeout_s)
        try:
            result = self.handler(sqs_event(messages, self.queue_arn), context)
            reported = (result or {}).get("batchItemFailures", []) if isinstance(result, dict) else []
            failed = {f["itemIdentifier"] for f in reported} if self.report_failures else set()
        except Exception:  # a crashed invocation fails the whole batch, as on Lambda
            failed = {m["MessageId"] for m in messages}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])
                ],
            )
        for m in messages:
            if m["MessageId"] in failed:
                self.stats["failures"] += 1
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=self.retry_delay
                )
        return len(messages)

    def drain(self, max_rounds: int = 10_000) -> int:
        """Poll until the queue answers empty; return how many messages were handled."""
        total = 0
        for _ in range(max_rounds):
            n = self.poll_once()
            if n == 0:
                return total
            total += n
        return total
