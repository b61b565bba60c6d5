"""SQS FIFO: accepted events, one SendMessageBatch per ten."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from exactly_once.events import InboundEvent

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SQS_BATCH = 10


class EventQueue:
    def __init__(self, queue_url: str, client: SQSClient) -> None:
        self.queue_url = queue_url
        self._client = client

    def send(self, events: Sequence[InboundEvent]) -> list[InboundEvent]:
        """Send events; return the ones SQS refused (the caller releases their dedup records)."""
        failed: list[InboundEvent] = []
        for start in range(0, len(events), SQS_BATCH):
            chunk = events[start : start + SQS_BATCH]
            response = self._client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": event.to_message(),
                        "MessageGroupId": event.group[:128],
                        "MessageDeduplicationId": event.dedup_id,
                    }
                    for i, event in enumerate(chunk)
                ],
            )
            failed.extend(chunk[int(entry["Id"])] for entry in response.get("Failed", []))
        return failed
