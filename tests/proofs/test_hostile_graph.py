"""Graph: a corpus of hostile and broken deliveries against the real ingest handler (and the worker behind it)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.graph_support import SUB, body, item
from tests.harness import TEST_SECRETS
from tests.proofs.hostile import Case, run_corpus

pytestmark = pytest.mark.slow

PATH = "/webhooks/graph"
JSON = {"content-type": "application/json"}
RIGHT = TEST_SECRETS["GRAPH_CLIENT_STATE"]
MAX_BODY = 1_048_576


def _with(message_id: str, **changes: Any) -> bytes:
    it = item(message_id)
    for dotted, value in changes.items():
        target = it
        *parents, last = dotted.split("__")
        for p in parents:
            target = target[p]
        if value is _DROP:
            del target[last]
        else:
            target[last] = value
    return body(it).encode()


_DROP = object()


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


def _text_is(expected: str):
    return lambda status, headers, data: (
        headers.get("content-type", "").startswith("text/plain") and data.decode() == expected
    )


def _b64(flag_only: bool):
    def tweak(event: dict[str, Any]) -> None:
        event["isBase64Encoded"] = True
        if not flag_only:
            event["body"] = base64.b64encode(event["body"].encode()).decode()

    return tweak


def _json_answer(**expected: int):
    return lambda status, headers, data: all(json.loads(data).get(k) == v for k, v in expected.items())


def corpus() -> list[Case]:
    good = body(item("h-good")).encode()
    cases = [
        # -- the validationToken handshake and query-string tricks
        Case("handshake", b"", 200, query="validationToken=abc", check=_text_is("abc")),
        Case("handshake on GET", b"", 200, method="GET", query="validationToken=abc", check=_text_is("abc")),
        Case("handshake token empty", b"", 400, query="validationToken="),
        Case("handshake token 1025 chars", b"", 400, query="validationToken=" + "a" * 1025),
        Case("handshake token 1024 chars", b"", 200, query="validationToken=" + "a" * 1024),
        Case(
            "handshake token with markup stays text/plain",
            b"",
            200,
            query="validationToken=%3Cscript%3Ex%3C/script%3E",
            check=_text_is("<script>x</script>"),
        ),
        Case(
            "handshake token with CRLF stays in the body",
            b"",
            200,
            query="validationToken=a%0D%0ASet-Cookie:%20x=1",
            check=lambda s, h, d: "set-cookie" not in {k.lower() for k in h},
        ),
        Case(
            "handshake token unicode",
            b"",
            200,
            query="validationToken=%E2%9C%93%F0%9F%98%80",
            check=_text_is("\u2713\U0001f600"),
        ),
        Case("handshake token double-encoded", b"", 200, query="validationToken=%2520", check=_text_is("%20")),
        Case("handshake token with NUL", b"", 400, query="validationToken=a%00b"),
        Case("handshake token repeated", b"", 200, query="validationToken=a&validationToken=b"),
        Case(
            "handshake with a notification body enqueues nothing", good, 200, headers=JSON, query="validationToken=abc"
        ),
        Case("handshake name in another case is no handshake", b"", 400, query="ValidationToken=abc"),
        Case("GET without token", b"", 400, method="GET"),
        # -- content types
        Case("xml content type", good, 415, headers={"content-type": "application/xml"}),
        Case("form content type", good, 415, headers={"content-type": "application/x-www-form-urlencoded"}),
        Case("multipart content type", good, 415, headers={"content-type": "multipart/form-data; boundary=x"}),
        Case("jsonp lookalike", good, 415, headers={"content-type": "application/jsonp"}),
        Case(
            "utf-16 body",
            json.dumps({"value": []}).encode("utf-16"),
            400,
            headers={"content-type": "application/json; charset=utf-16"},
        ),
        # -- malformed bodies
        Case("empty body", b"", 400, headers=JSON),
        Case("truncated JSON", good[: len(good) // 2], 400, headers=JSON),
        Case("trailing garbage", good + b"}", 400, headers=JSON),
        Case("null", b"null", 400, headers=JSON),
        Case("string", b'"value"', 400, headers=JSON),
        Case("array", b"[1,2,3]", 400, headers=JSON),
        Case("value null", b'{"value": null}', 400, headers=JSON),
        Case("value string", b'{"value": "x"}', 400, headers=JSON),
        Case("value object", b'{"value": {}}', 400, headers=JSON),
        Case("value empty", b'{"value": []}', 202, headers=JSON, check=_json_answer(accepted=0)),
        Case("utf-8 BOM", b"\xef\xbb\xbf" + good, 400, headers=JSON),
        Case("invalid utf-8", b'{"value": ["\xff\xfe"]}', 400, headers=JSON),
        Case("lone surrogate in raw bytes", b'{"value": ["\xed\xa0\x80"]}', 400, headers=JSON),
        Case("base64 flag on a non-base64 body", good, 400, headers=JSON, tweak=_b64(flag_only=True)),
        Case(
            "base64-encoded body",
            good.replace(b"h-good", b"h-b64"),
            202,
            headers=JSON,
            queued=1,
            tweak=_b64(flag_only=False),
        ),
        Case("nesting 100k deep", b"[" * 100_000 + b"]" * 100_000, 400, headers=JSON),
        Case("integer of 5000 digits", b'{"value": [' + b"9" * 5000 + b"]}", 400, headers=JSON),
        Case("oversized body", b'{"value": [], "pad": "' + b"x" * MAX_BODY + b'"}', 413, headers=JSON),
        # over Graph's 256 KiB: refused by size, never parsed (issue 16; they were parsed, then 401)
        Case("huge array of numbers", b'{"value": [' + b",".join([b"1"] * 200_000) + b"]}", 413, headers=JSON),
        Case("huge array of empty objects", b'{"value": [' + b",".join([b"{}"] * 100_000) + b"]}", 413, headers=JSON),
        Case(
            "300 KiB of guessed clientStates",
            json.dumps({"value": [{"clientState": "guess", "subscriptionId": "s"}] * 6_000}).encode(),
            413,
            headers=JSON,
        ),
        Case(
            "just under the limit, wrong clientState",
            json.dumps({"value": [{"clientState": "guess", "subscriptionId": "s"}], "pad": "x" * 200_000}).encode(),
            401,
            headers=JSON,
        ),
        # -- clientState (Graph's only authentication)
        Case("clientState missing", _with("h1", clientState=_DROP), 401, headers=JSON),
        Case("clientState wrong", _with("h2", clientState="guess"), 401, headers=JSON),
        Case("clientState null", _with("h3", clientState=None), 401, headers=JSON),
        Case("clientState number", _with("h4", clientState=12345), 401, headers=JSON),
        Case("clientState list holding the secret", _with("h5", clientState=[RIGHT]), 401, headers=JSON),
        Case("clientState object", _with("h6", clientState={"value": RIGHT}), 401, headers=JSON),
        Case("clientState with trailing space", _with("h7", clientState=RIGHT + " "), 401, headers=JSON),
        Case("clientState upper-cased", _with("h8", clientState=RIGHT.upper()), 401, headers=JSON),
        Case("clientState prefix", _with("h9", clientState=RIGHT[:-1]), 401, headers=JSON),
        Case("clientState empty", _with("h10", clientState=""), 401, headers=JSON),
        Case("clientState with NUL", _with("h11", clientState=RIGHT + "\x00"), 401, headers=JSON),
        Case(
            "clientState fullwidth lookalike", _with("h12", clientState=RIGHT.replace("t", "\uff54")), 401, headers=JSON
        ),
        Case(
            "mixed batch keeps the authentic item",
            body(item("h13"), item("h14", client_state="x")).encode(),
            202,
            headers=JSON,
            queued=1,
            check=_json_answer(accepted=1, rejected=1),
        ),
        # -- replays: the same notification again, and re-serialised (other key order and spacing)
        Case("authentic notification", good, 202, headers=JSON, queued=1, check=_json_answer(accepted=1)),
        Case("replayed notification", good, 202, headers=JSON, check=_json_answer(duplicates=1)),
        Case(
            "replayed notification re-serialised",
            json.dumps(json.loads(good), sort_keys=True, indent=3).encode(),
            202,
            headers=JSON,
            check=_json_answer(duplicates=1),
        ),
        Case(
            "duplicate JSON keys: the last clientState wins",
            good.replace(b'"clientState"', b'"clientState": "x", "clientState"', 1).replace(b"h-good", b"h-dupkey"),
            202,
            headers=JSON,
            queued=1,
        ),
        # -- authenticated but broken or odd: settled (event log or quarantine), never lost
        Case("missing subscriptionId", _with("q1", subscriptionId=_DROP), 202, headers=JSON, queued=1),
        Case("missing changeType", _with("q2", changeType=_DROP), 202, headers=JSON, queued=1),
        Case("missing resourceData", _with("q3", resourceData=_DROP), 202, headers=JSON, queued=1),
        Case("resourceData is a string", _with("q4", resourceData="x"), 202, headers=JSON, queued=1),
        Case("resourceData.id null", _with("q5", resourceData__id=None), 202, headers=JSON, queued=1),
        Case("resourceData.id object", _with("q6", resourceData__id={"a": 1}), 202, headers=JSON, queued=1),
        Case("resource not a message", _with("q7", resource="Users/u/Events/e"), 202, headers=JSON, queued=1),
        Case(
            "resource with path traversal",
            _with("q8", resource="Users/../../admin/Messages/q8"),
            202,
            headers=JSON,
            queued=1,
        ),
        Case("resource number", _with("q9", resource=42), 202, headers=JSON, queued=1),
        Case("changeType deleted", _with("q10", changeType="deleted"), 202, headers=JSON, queued=1),
        Case("changeType list", _with("q11", changeType=["created"]), 202, headers=JSON, queued=1),
        Case("subscriptionId number", _with("q12", subscriptionId=7), 202, headers=JSON, queued=1),
        Case("item nested 500 deep", _with("q13", extra=_nested(500)), 400, headers=JSON),
        Case("item nested 60 deep", _with("q13b", extra=_nested(60)), 202, headers=JSON, queued=1),
        Case("message id emoji", _with("q14", resourceData__id="\U0001f4e7-q14"), 202, headers=JSON, queued=1),
        # '..' would make /users/u/messages/.. (= /users/u): refused before any fetch, quarantined, never in the DLQ
        Case("message id '..'", _with("q14dots", resourceData__id=".."), 202, headers=JSON, queued=1),
        Case("message id '.'", _with("q14dot", resourceData__id="."), 202, headers=JSON, queued=1),
        Case(
            "message id lone surrogate (escaped)",
            _with("q15").replace(b'"id": "q15"', b'"id": "q15\\ud800"'),
            202,
            headers=JSON,
            queued=1,
        ),
        Case(
            "message id NUL (escaped)",
            _with("q16").replace(b'"id": "q16"', b'"id": "q16\\u0000"'),
            202,
            headers=JSON,
            queued=1,
        ),
        Case(
            "message id RTL override and zero-width",
            _with("q17", resourceData__id="q17\u202e\u200d"),
            202,
            headers=JSON,
            queued=1,
        ),
        Case(
            "mailbox id 10k chars",
            _with("q18", resource=f"Users/{'u' * 10_000}/Messages/q18"),
            202,
            headers=JSON,
            queued=1,
        ),
        Case(
            "mailbox id unicode",
            _with("q19", resource="Users/\u00fcser\u4e2d/Messages/q19"),
            202,
            headers=JSON,
            queued=1,
        ),
        Case(
            "NaN in the item",
            _with("q20").replace(b'"tenantId"', b'"n": NaN, "tenantId"'),
            400,
            headers=JSON,
        ),
        Case(
            "1e400 in the item",
            _with("q21").replace(b'"tenantId"', b'"n": 1e400, "tenantId"'),
            400,
            headers=JSON,
        ),
        Case(
            "lifecycle event unknown",
            body({"subscriptionId": SUB, "clientState": RIGHT, "lifecycleEvent": "hacked"}).encode(),
            202,
            headers=JSON,
            queued=1,
        ),
        Case(
            "lifecycle event object",
            body({"subscriptionId": SUB, "clientState": RIGHT, "lifecycleEvent": {"x": 1}}).encode(),
            202,
            headers=JSON,
            queued=1,
        ),
    ]
    return cases


def test_graph_hostile_corpus(stack, db, proof):
    cases = corpus()
    result = run_corpus(stack, db, "GraphIngestFunction", PATH, cases)
    assert not result.failures, "\n".join(result.failures)
    assert len(cases) >= 50
    assert 500 not in result.statuses
    proof.record(
        kind="hostile",
        flow="graph",
        name="hostile and broken deliveries",
        cases=result.cases,
        held=(
            f"{sum(n for s, n in result.statuses.items() if s >= 500)} x 5xx; "
            f"statuses {dict(sorted(result.statuses.items()))}; {result.queued} authenticated events queued, "
            f"{result.settled} settled, {max(result.queued - result.settled, 0)} lost"
        ),
    )
