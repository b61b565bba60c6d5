"""fifo.group_id and EventQueue: group ids SQS FIFO accepts; SendMessageBatch stays under 256 KiB and 10 entries."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from exactly_once.core.events import InboundEvent
from exactly_once.core.fifo import SQS_BATCH, SQS_BATCH_BYTES, EventQueue, group_id

KIB = 1024


@given(st.text(min_size=1, max_size=300))
def test_group_ids_are_what_sqs_fifo_accepts_and_stable(group):
    gid = group_id(group)
    assert 1 <= len(gid) <= 128 and all("!" <= c <= "~" for c in gid)
    assert group_id(group) == gid


class _Sqs:
    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.batches.append(Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def _entry_bytes(entry: dict[str, Any]) -> int:
    return sum(len(entry[k].encode()) for k in ("MessageBody", "MessageGroupId", "MessageDeduplicationId"))


def test_batches_are_split_by_size_as_well_as_by_ten_and_keep_the_order():
    sqs = _Sqs()
    events = [InboundEvent("p", f"p:{i}", "p:g", "created", {"text": "x" * (60 * KIB)}) for i in range(12)]
    events += [InboundEvent("p", f"p:small{i}", "p:g", "created", {}) for i in range(15)]
    assert EventQueue("url", sqs).send(events) == []  # type: ignore[arg-type]
    for batch in sqs.batches:
        assert len(batch) <= SQS_BATCH and sum(_entry_bytes(e) for e in batch) <= SQS_BATCH_BYTES
        assert [e["Id"] for e in batch] == [str(i) for i in range(len(batch))]
    sent = [InboundEvent.from_message(e["MessageBody"]).key for batch in sqs.batches for e in batch]
    assert sent == [e.key for e in events]
    assert [len(b) for b in sqs.batches] == [4, 4, 10, 9]  # four 60 KiB events a batch, then ten at most


def test_refused_entries_are_mapped_back_to_their_events():
    class Refusing(_Sqs):
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            super().send_message_batch(QueueUrl, Entries)
            return {"Failed": [{"Id": "1", "SenderFault": False, "Code": "InternalError"}]}

    events = [InboundEvent("p", f"p:{i}", "p:g", "created", {"text": "x" * (100 * KIB)}) for i in range(4)]
    failed = EventQueue("url", Refusing()).send(events)  # type: ignore[arg-type]
    assert [e.key for e in failed] == ["p:1", "p:3"]  # batches [0, 1] and [2, 3]
