"""SQS FIFO: accepted events, one SendMessageBatch per ten, or fewer when ten would be over 256 KiB.

Errors: a failed SendMessageBatch call (botocore's ``BotoCoreError``/``ClientError``) leaves ``EventQueue.send``
as a ``QueueUnavailableError`` carrying it; entries SQS refused one by one are returned, not raised.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from exactly_once.core.errors import QueueUnavailableError
from exactly_once.core.events import InboundEvent

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

SQS_BATCH = 10
#: SQS refuses a SendMessageBatch whose messages add up to more than 256 KiB (each message counted
#: with its attributes; the group and deduplication ids are counted too, to be safe).
SQS_BATCH_BYTES = 256 * 1024
# SQS FIFO takes 1-128 characters of [a-zA-Z0-9] and ASCII punctuation as a MessageGroupId. moto takes
# anything, AWS refuses the whole batch.
_GROUP_OK = re.compile(r"^[!-~]{1,128}$")


def group_id(*parts: object) -> str:
    """The FIFO message group for ``parts`` (joined with ":", None and "" left out): the one rule for groups.

    Adapters build an event's group with it, and the queue applies it again to whatever group an
    event carries (it is idempotent: a group it made comes back unchanged). A group that is already
    what SQS takes (1-128 characters of ``[!-~]``) is kept as is, readable; any other (a mailbox id in
    unicode, a space, a 10k-character user id) becomes ``h:`` and its sha256, the same every time,
    so equal inputs still share one group and different ones do not collide. Nothing: ``default``.
    """
    group = ":".join(str(part) for part in parts if part is not None and part != "")
    if not group:
        return "default"
    if _GROUP_OK.match(group):
        return group
    return "h:" + hashlib.sha256(group.encode("utf-8", "surrogatepass")).hexdigest()


class EventQueue:
    def __init__(self, queue_url: str, client: SQSClient) -> None:
        self.queue_url = queue_url
        self._client = client

    def send(self, events: Sequence[InboundEvent]) -> list[InboundEvent]:
        """Send events; return the ones SQS refused (the caller releases their dedup records).

        Raises ``QueueUnavailableError`` when a SendMessageBatch call fails as a whole.
        """
        failed: list[InboundEvent] = []
        for chunk in _batches(events):
            try:
                response = self._client.send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[entry for _, entry in chunk],
                )
            except (BotoCoreError, ClientError) as exc:
                raise QueueUnavailableError("events queue unavailable", exc) from exc
            failed.extend(chunk[int(entry["Id"])][0] for entry in response.get("Failed", []))
        return failed


def _batches(
    events: Sequence[InboundEvent],
) -> Iterator[list[tuple[InboundEvent, SendMessageBatchRequestEntryTypeDef]]]:
    """Events in order, in batches of at most SQS_BATCH entries and SQS_BATCH_BYTES bytes.

    An entry over the byte limit on its own (``events.storable`` keeps queued events well under it) still
    goes, alone: SQS refuses it and the caller answers a retryable error, as for any refused entry.
    """
    chunk: list[tuple[InboundEvent, SendMessageBatchRequestEntryTypeDef]] = []
    size = 0
    for event in events:
        body, group, dedup = event.to_message(), group_id(event.group), event.dedup_id
        length = len(body.encode("utf-8")) + len(group) + len(dedup)  # the ids are ASCII
        if chunk and (len(chunk) == SQS_BATCH or size + length > SQS_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        entry: SendMessageBatchRequestEntryTypeDef = {
            "Id": str(len(chunk)),
            "MessageBody": body,
            "MessageGroupId": group,
            "MessageDeduplicationId": dedup,
        }
        chunk.append((event, entry))
        size += length
    if chunk:
        yield chunk
