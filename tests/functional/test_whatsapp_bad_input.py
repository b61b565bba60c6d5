"""Hostile or broken WhatsApp input: a clear 4xx JSON error, or for a signed but unreadable body,
200 (Meta would retry anything else for 7 days) and a quarantine row with the raw body and the reason."""

from __future__ import annotations

import pytest

from tests.harness import TEST_SECRETS
from tests.whatsapp_support import (
    change,
    entry,
    envelope,
    failed,
    headers_for,
    meta_bytes,
    one_text,
    post,
    sign,
    text_message,
    verify,
)

TOKEN = TEST_SECRETS["WHATSAPP_VERIFY_TOKEN"]


def test_verification_handshake_echoes_the_challenge(stack):
    answer = verify(stack, **{"hub.mode": "subscribe", "hub.verify_token": TOKEN, "hub.challenge": "1158201444"})
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.body == b"1158201444"


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong-token", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": TOKEN[:-1], "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": TOKEN},
        {},
    ],
)
def test_verification_with_anything_else_is_403_json(stack, query):
    answer = verify(stack, **query)
    assert answer.status == 403
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"] in ("verify_failed", "invalid_challenge")


@pytest.mark.parametrize(
    ("signature", "error"),
    [
        (None, "missing_signature"),
        ("", "missing_signature"),
        ("sha256=" + "0" * 64, "invalid_signature"),
        ("sha1=deadbeef", "invalid_signature"),
        ("sha256=" + sign(b"another body")[7:], "invalid_signature"),
    ],
)
def test_unsigned_or_badly_signed_post_is_401_and_nothing_is_queued(stack, db, signature, error):
    answer = post(stack, one_text("wamid.S1"), signature=signature)
    assert answer.status == 401
    assert answer.json()["error"] == error
    assert stack.queue_depth("EventsQueue") == 0


def test_signed_with_another_app_secret_is_401(stack):
    raw = meta_bytes(one_text("wamid.S2"))
    assert post(stack, raw, signature=sign(raw, secret="some-other-app-secret")).status == 401


def test_malformed_json_without_a_valid_signature_is_401_not_quarantined(stack, db):
    answer = post(stack, b"{not json", signature="sha256=" + "1" * 64)
    assert answer.status == 401
    stack.drain()
    assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not UTF-8 JSON"),
        (b"\xff\xfe{}", "not UTF-8 JSON"),
        (b'{"object":"whatsapp_business_account"}', "no entry[] array"),
        (b'{"object":"page","entry":[]}', "not whatsapp_business_account"),
        (b"[1,2,3]", "no entry[] array"),
        (b'{"entry": "\x00"}', "NUL bytes shown as U+FFFD"),
    ],
)
def test_signed_but_unreadable_body_is_200_and_quarantined_with_its_raw_bytes(stack, db, raw, reason):
    answer = post(stack, raw)
    stack.drain()
    assert answer.status == 200
    rows = db.execute("SELECT provider, reason, raw FROM quarantine").fetchall()
    assert len(rows) == 1
    provider, why, kept = rows[0]
    assert provider == "whatsapp" and reason in why
    assert kept == raw.decode("utf-8", "replace").replace("\x00", "\ufffd")
    # a re-delivery of the same bytes is a duplicate, not a second quarantine row
    assert post(stack, raw).json()["duplicates"] == 1


def test_unknown_shapes_inside_a_good_body_are_quarantined_and_the_rest_processed(stack, db):
    payload = envelope(
        entry(
            change(messages=[text_message("wamid.G1", "good")]),
            {"field": "account_update", "value": {"phone_number": "15550783881", "event": "VERIFIED_ACCOUNT"}},
            {"field": "messages", "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "1"}}},
            change(messages=[{"type": "text", "text": {"body": "no id, no from"}}]),
        ),
        {"id": "no-changes"},
    )
    answer = post(stack, payload)
    stack.drain()
    assert answer.status == 200 and answer.json()["accepted"] == 5
    assert [r[0] for r in db.execute("SELECT wamid FROM whatsapp_messages")] == ["wamid.G1"]
    reasons = sorted(r[0] for r in db.execute("SELECT reason FROM quarantine"))
    assert len(reasons) == 3  # account_update is routine traffic: recorded, not quarantined
    assert db.execute("SELECT kind FROM event_log WHERE kind LIKE 'field:%'").fetchall() == [("field:account_update",)]
    assert any("lacks a string id or from" in r for r in reasons)
    assert any("no changes[]" in r for r in reasons)
    assert stack.queue_depth("EventsDeadLetterQueue") == 0


def test_body_over_3_mb_is_413(stack):
    messages = [text_message(f"wamid.{i:06d}", "x" * 3000) for i in range(1100)]
    raw = meta_bytes(envelope(entry(change(messages=messages))))
    assert len(raw) > 3 * 1024 * 1024
    answer = post(stack, raw)
    assert answer.status == 413
    assert answer.json()["error"] == "payload_too_large"
    assert stack.queue_depth("EventsQueue") == 0


def test_more_than_1000_updates_is_200_and_quarantined_whole(stack, db):
    messages = [text_message(f"wamid.{i:05d}", "hi") for i in range(1001)]
    raw = meta_bytes(envelope(entry(change(messages=messages))))
    assert len(raw) < 3 * 1024 * 1024
    answer = post(stack, raw)
    stack.drain()
    assert answer.status == 200
    assert db.execute("SELECT count(*) FROM whatsapp_messages").fetchone()[0] == 0
    (reason,) = db.execute("SELECT reason FROM quarantine").fetchone()
    assert "1001 updates" in reason


def test_wrong_content_type_is_415(stack):
    raw = meta_bytes(one_text("wamid.C1"))
    headers = {**headers_for(raw), "content-type": "text/plain"}
    answer = post(stack, raw, headers=headers)
    assert answer.status == 415
    assert answer.json()["error"] == "unsupported_media_type"


def test_a_failed_dedup_write_releases_the_whole_batch_and_the_retry_gets_in(stack):
    from botocore.exceptions import EndpointConnectionError

    from exactly_once.core import aws
    from exactly_once.flows.whatsapp.adapter import message_key
    from exactly_once.ops.trace import ingest_record, ingest_record_id

    # GIVEN a 10-message POST and DynamoDB unreachable for the write of one of its updates
    raw = meta_bytes(envelope(entry(change(messages=[text_message(f"wamid.F{i}", "hi") for i in range(10)]))))
    stack.handler("WhatsAppIngestFunction")  # the warm container: its DynamoDB client exists now
    unlucky = ingest_record_id("whatsapp", message_key("wamid.F5")).encode()

    def unreachable(request, **_):
        if unlucky in (request.body or b""):
            raise EndpointConnectionError(endpoint_url=request.url)

    aws.dynamodb().meta.events.register("before-send.dynamodb.PutItem", unreachable)
    try:
        answer = post(stack, raw)
    finally:
        aws.dynamodb().meta.events.unregister("before-send.dynamodb.PutItem", unreachable)
    # THEN Meta is told to retry, nothing is queued, and the 9 reservations that did succeed are released
    assert answer.status == 503
    assert stack.queue_depth("EventsQueue") == 0
    table = stack.env["IDEMPOTENCY_TABLE"]
    for i in range(10):
        assert ingest_record(aws.dynamodb(), table, "whatsapp", message_key(f"wamid.F{i}"))["status"] == "absent"
    # AND Meta's retry is accepted whole
    assert post(stack, raw).json() == {"accepted": 10, "duplicates": 0, "rejected": 0}


def test_nul_characters_and_absurd_timestamps_do_not_keep_a_message_out(stack, db):
    from devstack.lambda_runtime import LambdaContext, sqs_event
    from exactly_once.flows.whatsapp.adapter import WhatsAppAdapter
    from exactly_once.ingest.apigw import Request

    # GIVEN a message with a NUL character (Postgres stores none, in text or jsonb), a failed status whose
    # errors carry one, and a message with an absurd timestamp
    nul = text_message("wamid.NUL", "a\u0000b")
    late = {**text_message("wamid.TS", "far future"), "timestamp": "99999999999999999"}
    broken_status = failed("wamid.OUT")
    broken_status["errors"][0]["title"] = "x\u0000y"
    raw = meta_bytes(envelope(entry(change(messages=[nul, late], statuses=[broken_status]))))
    # WHEN the worker gets them as SQS carries them (handed over directly: local moto rewrites a NUL itself)
    adapter = WhatsAppAdapter(TEST_SECRETS["WHATSAPP_APP_SECRET"], TOKEN)
    events = adapter.split(Request("POST", "/", raw, headers_for(raw), {})).events
    messages = [
        {"MessageId": f"m{i}", "ReceiptHandle": "r", "Body": e.to_message(), "Attributes": {"MessageGroupId": e.group}}
        for i, e in enumerate(events)
    ]
    worker = stack.handler("EventWorkerFunction")
    result = worker(sqs_event(messages, "arn:aws:sqs:us-east-1:000000000000:EventsQueue.fifo"), LambdaContext())
    # THEN nothing is left to retry: both messages are stored (the NUL as U+FFFD, the timestamp as unknown)
    # and replied to, and the failure keeps its errors
    assert result["batchItemFailures"] == []
    stored = dict(db.execute("SELECT wamid, text FROM whatsapp_messages").fetchall())
    assert stored == {"wamid.NUL": "a\ufffdb", "wamid.TS": "far future"}
    assert db.execute("SELECT sent_at FROM whatsapp_messages WHERE wamid = 'wamid.TS'").fetchone()[0] is None
    assert db.execute("SELECT count(*) FROM send_queue").fetchone()[0] == 2
    errors = db.execute("SELECT errors FROM message_delivery").fetchone()[0]
    assert errors[0]["title"] == "x\ufffdy"
    assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0
