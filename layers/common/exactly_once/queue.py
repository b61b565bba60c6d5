"""SQS FIFO: accepted events, one SendMessageBatch per ten."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from exactly_once.events import InboundEvent

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SQS_BATCH = 10
# SQS FIFO takes 1-128 characters of [a-zA-Z0-9] and ASCII punctuation as a MessageGroupId. moto takes
# anything, AWS refuses the whole batch: a group built from provider data (a mailbox id in unicode, a
# 10k-character user id) is hashed, the same way every time, so its events still share one group.
_GROUP_OK = re.compile(r"^[!-~]{1,128}$")


def group_id(group: str) -> str:
    if _GROUP_OK.match(group):
        return group
    return "h:" + hashlib.sha256(group.encode("utf-8", "surrogatepass")).hexdigest()


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
                        "MessageGroupId": group_id(event.group),
                        "MessageDeduplicationId": event.dedup_id,
                    }
                    for i, event in enumerate(chunk)
                ],
            )
            failed.extend(chunk[int(entry["Id"])] for entry in response.get("Failed", []))
        return failed
