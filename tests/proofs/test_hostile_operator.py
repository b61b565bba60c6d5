"""The operator route POST /sends: the API token authorizer against forged tokens, and the handler against
broken and hostile bodies -> the right 4xx with a JSON error, never a 5xx, no row and no queue message for
anything refused, one row per idempotency key for what is accepted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack.lambda_runtime import LambdaContext, apigw_event
from tests.harness import TEST_SECRETS
from tests.send_support import AUTH, URL, send_body

pytestmark = pytest.mark.slow

TOKEN = TEST_SECRETS["API_TOKEN"]
BAD = (400, 409, 413, 415, 422)


def _tokens() -> list[tuple[str, dict[str, str], bool]]:
    return [
        ("the token", {"authorization": f"Bearer {TOKEN}"}, True),
        ("scheme in lower case", {"authorization": f"bearer {TOKEN}"}, True),
        ("no header", {}, False),
        ("empty header", {"authorization": ""}, False),
        ("scheme only", {"authorization": "Bearer"}, False),
        ("token without scheme", {"authorization": TOKEN}, False),
        ("Basic scheme", {"authorization": f"Basic {TOKEN}"}, False),
        ("token with a suffix", {"authorization": f"Bearer {TOKEN}x"}, False),
        ("token prefix", {"authorization": f"Bearer {TOKEN[:-1]}"}, False),
        ("token upper-cased", {"authorization": f"Bearer {TOKEN.upper()}"}, False),
        ("token 100 kB", {"authorization": "Bearer " + "a" * 100_000}, False),
        ("token non-ASCII", {"authorization": f"Bearer {TOKEN[:-1]}\u00e9"}, False),
        ("token with NUL", {"authorization": f"Bearer {TOKEN}\x00"}, False),
        ("two tokens", {"authorization": f"Bearer wrong, Bearer {TOKEN}"}, False),
        ("another provider's secret", {"authorization": f"Bearer {TEST_SECRETS['SLACK_SIGNING_SECRET']}"}, False),
    ]


def _bodies() -> list[tuple[str, bytes, Any, dict[str, str]]]:
    ok = send_body("hostile ok", chat="chat_h", sender="acc_h")

    def b(doc: Any) -> bytes:
        return json.dumps(doc).encode()

    cases: list[tuple[str, bytes, Any, dict[str, str]]] = [
        ("valid", b(ok), (200, 201, 202), {"idempotency-key": "h-1"}),
        ("valid, replayed", b(ok), (200, 201, 202), {"idempotency-key": "h-1"}),
        (
            "valid, re-serialised",
            json.dumps(ok, indent=2, sort_keys=True).encode(),
            (200, 201, 202),
            {"idempotency-key": "h-1"},
        ),
        ("same key, other payload", b({**ok, "payload": {"text": "other"}}), (409,), {"idempotency-key": "h-1"}),
        ("derived key", b({**ok, "campaign_id": "c", "prospect_id": "p", "step": 1}), (200, 201, 202), {}),
        ("no key at all", b(ok), (400,), {}),
        ("derived key part missing", b({**ok, "campaign_id": "c", "step": 1}), (400,), {}),
        ("empty body", b"", (400,), {"idempotency-key": "h-2"}),
        ("truncated JSON", b(ok)[:20], (400,), {"idempotency-key": "h-3"}),
        ("JSON array", b"[1]", (400,), {"idempotency-key": "h-4"}),
        ("JSON null", b"null", (400,), {"idempotency-key": "h-5"}),
        ("utf-8 BOM", b"\xef\xbb\xbf" + b(ok), (400,), {"idempotency-key": "h-6"}),
        ("invalid utf-8", b(ok)[:-2] + b"\xff}", (400,), {"idempotency-key": "h-7"}),
        ("nesting 10k deep", b"[" * 10_000 + b"]" * 10_000, (400,), {"idempotency-key": "h-8"}),
        ("NaN", b(ok)[:-1] + b',"x":NaN}', (400,), {"idempotency-key": "h-9"}),
        ("1e400", b(ok)[:-1] + b',"x":1e400}', (400,), {"idempotency-key": "h-10"}),
        # No body limit on this route yet (API Gateway caps at 10 MB): accepted, then refused by the channel.
        ("2 MB text", b({**ok, "payload": {"text": "x" * 2_000_000}}), (*BAD, 201), {"idempotency-key": "h-11"}),
        (
            "xml content type",
            b(ok),
            (400, 415, 200, 201, 202),
            {"idempotency-key": "h-12", "content-type": "application/xml"},
        ),
    ]
    for i, field in enumerate(("channel", "sender_account", "recipient")):
        for j, value in enumerate((None, "", 7, ["x"], {"a": 1})):
            doc = {**ok, field: value} if value is not None else {k: v for k, v in ok.items() if k != field}
            cases.append((f"{field} {value!r}", b(doc), (400,), {"idempotency-key": f"h-f{i}{j}"}))
    for j, value in enumerate((None, "text", 5, ["a"])):
        doc = {k: v for k, v in ok.items() if k != "payload"} if value is None else {**ok, "payload": value}
        cases.append((f"payload {value!r}", b(doc), (400,), {"idempotency-key": f"h-p{j}"}))
    cases += [
        ("unknown channel", b({**ok, "channel": "carrier-pigeon"}), (400,), {"idempotency-key": "h-c1"}),
        ("policy number", b({**ok, "policy": 3}), (400,), {"idempotency-key": "h-c2"}),
        ("policy unknown", b({**ok, "policy": "sometimes"}), (400,), {"idempotency-key": "h-c3"}),
        (
            "text instead of payload",
            b({k: v for k, v in {**ok, "text": "hi"}.items() if k != "payload"}),
            (200, 201, 202),
            {"idempotency-key": "h-c4"},
        ),
        ("empty text", b({**ok, "payload": {"text": ""}}), (400, 200, 201, 202), {"idempotency-key": "h-c5"}),
        (
            "text with NUL and lone surrogate",
            b(ok).replace(b"hostile ok", b"a\\u0000b\\ud800"),
            (200, 201, 202),
            {"idempotency-key": "h-c6"},
        ),
        ("Idempotency-Key with NUL", b(ok), (400,), {"idempotency-key": "h-k\x00nul"}),
        ("Idempotency-Key with a newline", b(ok), (400,), {"idempotency-key": "h-k\nline"}),
        (
            "emoji and RTL",
            b({**ok, "payload": {"text": "\U0001f600 \u202e"}}),
            (200, 201, 202),
            {"idempotency-key": "h-c7"},
        ),
        (
            "recipient 10k chars",
            b({**ok, "recipient": "r" * 10_000}),
            (200, 201, 202, 400),
            {"idempotency-key": "h-c8"},
        ),
        ("idempotency key 10k chars", b(ok), (200, 201, 202, 400), {"idempotency-key": "k" * 10_000}),
        ("idempotency key unicode", b(ok), (200, 201, 202, 400), {"idempotency-key": "\u00e9\u4e2d"}),
        (
            "SQL in the fields",
            b({**ok, "recipient": "x'); DROP TABLE send_queue;--"}),
            (200, 201, 202),
            {"idempotency-key": "h-c9"},
        ),
    ]
    deep: Any = 1
    for _ in range(100):
        deep = {"n": deep}
    cases += [
        (
            "payload nested 100 deep",
            b({**ok, "payload": {"text": "x", "deep": deep}}),
            (400,),
            {"idempotency-key": "h-d1"},
        ),
        (
            "payload with 100k numbers",
            b({**ok, "payload": {"text": "x", "n": list(range(100_000))}}),
            (*BAD, 201),
            {"idempotency-key": "h-d2"},
        ),
        (
            "duplicate JSON keys",
            b(ok)[:-1] + b', "recipient": "chat_dup"}',
            (200, 201, 202),
            {"idempotency-key": "h-d3"},
        ),
        (
            "no content type",
            b({**ok, "recipient": "chat_nct"}),
            (200, 201, 202, 415),
            {"idempotency-key": "h-d4", "content-type": ""},
        ),
    ]
    return cases


def test_api_token_authorizer_refuses_every_forgery(stack, proof):
    handler = stack.handler("ApiAuthorizerFunction")
    wrong = []
    for name, headers, allowed in _tokens():
        event = apigw_event("POST", URL, b"{}", headers)
        if handler(event, LambdaContext(function_name="ApiAuthorizerFunction"))["isAuthorized"] is not allowed:
            wrong.append(name)
    assert not wrong
    refused = sum(1 for *_, allowed in _tokens() if not allowed)
    let_in = sum(1 for *_, allowed in _tokens() if allowed)
    proof.record(
        kind="hostile",
        flow="operator API",
        name="API token authorizer: forged tokens",
        cases=len(_tokens()),
        held=f"{refused} forgeries refused, {let_in} right tokens let in",
    )


def test_post_sends_refuses_broken_bodies_with_json_errors_and_queues_nothing_for_them(stack, db, proof):
    failures, statuses, accepted_keys = [], {}, set()
    cases = _bodies()
    for name, body, expected, extra in cases:
        rows_before = db.execute("SELECT count(*) FROM send_queue").fetchone()[0]
        depth_before = stack.queue_depth("SendQueue")
        answer = stack.invoke_http("SendEnqueueFunction", "POST", URL, body, {**AUTH, **extra})
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        rows = db.execute("SELECT count(*) FROM send_queue").fetchone()[0] - rows_before
        queued = stack.queue_depth("SendQueue") - depth_before
        if answer.status not in expected:
            failures.append(f"{name}: {answer.status} not in {expected}: {answer.body[:150]!r}")
        if answer.status >= 400:
            try:
                assert json.loads(answer.body)["error"]
            except (ValueError, KeyError, AssertionError):
                failures.append(f"{name}: {answer.status} without a JSON error body")
            if rows or queued:
                failures.append(f"{name}: refused but {rows} rows, {queued} queue messages")
        elif rows > 1 or queued > 1:
            failures.append(f"{name}: {rows} rows, {queued} messages for one request")
        if answer.status < 300:
            accepted_keys.add(extra.get("idempotency-key") or name)
    assert not failures, "\n".join(failures)
    assert len(cases) >= 50 and not any(s >= 500 for s in statuses)
    # one row per accepted idempotency key, never more
    rows = db.execute("SELECT count(*) FROM send_queue").fetchone()[0]
    assert rows == len(accepted_keys)
    fivexx = sum(n for s, n in statuses.items() if s >= 500)
    proof.record(
        kind="hostile",
        flow="operator API",
        name="POST /sends: broken and hostile bodies",
        cases=len(cases),
        held=f"{fivexx} x 5xx; statuses {dict(sorted(statuses.items()))}; refused requests left 0 rows and "
        f"0 messages; {rows} rows for {len(accepted_keys)} accepted keys",
    )
