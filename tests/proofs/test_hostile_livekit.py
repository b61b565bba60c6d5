"""LiveKit: a corpus of hostile and broken deliveries against the real ingest handler (and the worker behind it).

Every authenticated body is either queued as an event or carried to quarantine; nothing unauthenticated is
queued; no case is a 5xx."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import jwt
import pytest

from tests.livekit_support import API_KEY, API_SECRET, encode, room_event, sign
from tests.proofs.hostile import Case, run_corpus

pytestmark = pytest.mark.slow

PATH = "/webhooks/livekit"
CT = "application/webhook+json"
MAX_BODY = 1_048_576


def signed(body: bytes, **kw: Any) -> dict[str, str]:
    return {"content-type": CT, "authorization": sign(body, **kw)}


def _claims(body: bytes) -> dict[str, Any]:
    return jwt.decode(sign(body), API_SECRET, algorithms=["HS256"], issuer=API_KEY)


def forged(body: bytes, change: dict[str, Any], algorithm: str = "HS256", secret: str = API_SECRET) -> dict[str, str]:
    claims = {k: v for k, v in {**_claims(body), **change}.items() if v is not None}
    return {"content-type": CT, "authorization": jwt.encode(claims, secret, algorithm=algorithm)}


def _event(**changes: Any) -> bytes:
    body = room_event(event_id=f"EV_h_{abs(hash(json.dumps(changes, default=str, sort_keys=True))) % 10**9}")
    for key, value in changes.items():
        if value is _DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return encode(body)


_DROP = object()


def _nested(depth: int) -> bytes:
    return b'{"event":"room_finished","id":"EV_deep","x":' + b"[" * depth + b"]" * depth + b"}"


def _b64(event: dict[str, Any]) -> None:
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True


def corpus() -> list[Case]:
    good = encode(room_event(event_id="EV_h_good"))
    other = encode(room_event(event_id="EV_h_other"))
    hex_hash = hashlib.sha256(good).hexdigest()
    urlsafe = base64.urlsafe_b64encode(hashlib.sha256(good).digest()).decode().rstrip("=")
    return [
        # -- the happy path and its re-delivery
        Case("room_finished", good, 200, headers=signed(good), queued=1),
        Case("same delivery again", good, 200, headers=signed(good), queued=0),
        Case(
            "participant_joined",
            _event(event="participant_joined"),
            200,
            headers=signed(_event(event="participant_joined")),
            queued=1,
        ),
        Case(
            "unknown event type",
            _event(event="agent_dispatched"),
            200,
            headers=signed(_event(event="agent_dispatched")),
            queued=1,
        ),
        Case(
            "charset parameter", other, 200, headers={**signed(other), "content-type": CT + "; charset=utf-8"}, queued=1
        ),
        Case(
            "Bearer prefix",
            _event(n=1),
            200,
            headers={**signed(_event(n=1)), "authorization": "Bearer " + sign(_event(n=1))},
            queued=1,
        ),
        Case("base64 body from API Gateway", _event(n=2), 200, headers=signed(_event(n=2)), queued=1, tweak=_b64),
        # -- authentic but not an event: quarantined, acknowledged
        Case("no id", _event(id=_DROP), 200, headers=signed(_event(id=_DROP)), queued=1),
        Case("no event type", _event(event=_DROP), 200, headers=signed(_event(event=_DROP)), queued=1),
        Case("numeric id", _event(id=42), 200, headers=signed(_event(id=42)), queued=1),
        Case("empty id", _event(id=""), 200, headers=signed(_event(id="")), queued=1),
        Case("room is a string", _event(room="RM_x"), 200, headers=signed(_event(room="RM_x")), queued=1),
        Case(
            "NUL in room name",
            _event(room={"sid": "RM_nul", "name": "a\u0000b"}),
            200,
            headers=signed(_event(room={"sid": "RM_nul", "name": "a\u0000b"})),
            queued=1,
        ),
        # -- authentic but unreadable: 400, raw body quarantined first
        Case("truncated JSON", good[:40], 400, headers=signed(good[:40]), queued=1),
        Case("empty body", b"", 400, headers=signed(b""), queued=1),
        Case("array", b"[1,2]", 400, headers=signed(b"[1,2]"), queued=1),
        Case("null", b"null", 400, headers=signed(b"null"), queued=1),
        Case("not UTF-8", b"\xff\xfe{}", 400, headers=signed(b"\xff\xfe{}"), queued=1),
        Case(
            "NaN",
            b'{"event":"room_finished","id":"EV_nan","x":NaN}',
            400,
            headers=signed(b'{"event":"room_finished","id":"EV_nan","x":NaN}'),
            queued=1,
        ),
        Case("nested 5000 deep", _nested(5000), 400, headers=signed(_nested(5000)), queued=1),
        # -- not authenticated: 401, nothing queued
        Case("no Authorization", good, 401, headers={"content-type": CT}),
        Case("empty Authorization", good, 401, headers={"content-type": CT, "authorization": ""}),
        Case("token of another body", good, 401, headers=signed(other)),
        Case("body with one byte changed", good.replace(b"RM_", b"RN_", 1), 401, headers=signed(good)),
        Case("body with trailing newline", good + b"\n", 401, headers=signed(good)),
        Case("expired", good, 401, headers=signed(good, ttl_seconds=-60)),
        Case("not yet valid", good, 401, headers=forged(good, {"nbf": _claims(good)["nbf"] + 120})),
        Case("no exp", good, 401, headers=forged(good, {"exp": None})),
        Case("no sha256", good, 401, headers=forged(good, {"sha256": None})),
        Case("sha256 hex", good, 401, headers=forged(good, {"sha256": hex_hash})),
        Case("sha256 urlsafe unpadded", good, 401, headers=forged(good, {"sha256": urlsafe})),
        Case("sha256 not a string", good, 401, headers=forged(good, {"sha256": 1})),
        Case("wrong issuer", good, 401, headers=forged(good, {"iss": "APIother"})),
        Case("no issuer", good, 401, headers=forged(good, {"iss": None})),
        Case("wrong secret", good, 401, headers=forged(good, {}, secret="another-secret-0123456789abcdef0123")),
        Case("HS512", good, 401, headers=forged(good, {}, algorithm="HS512")),
        Case(
            "alg none",
            good,
            401,
            headers={"content-type": CT, "authorization": jwt.encode(_claims(good), None, algorithm="none")},
        ),
        Case("garbage token", good, 401, headers={"content-type": CT, "authorization": "a.b.c"}),
        Case("token 9000 chars", good, 401, headers={"content-type": CT, "authorization": "e" * 9000}),
        Case("unsigned malformed JSON", b"{oops", 401, headers={"content-type": CT}),
        # -- transport limits
        Case("text/plain", good, 415, headers={**signed(good), "content-type": "text/plain"}),
        Case("no content type", good, 415, headers={"authorization": sign(good)}),
        Case(
            "over the size limit",
            b"{" + b" " * MAX_BODY + b"}",
            413,
            headers={"content-type": CT, "authorization": "x"},
        ),
    ]


def test_livekit_hostile_corpus(stack, db, proof):
    cases = corpus()
    result = run_corpus(stack, db, "LiveKitIngestFunction", PATH, cases)
    assert not result.failures, "\n".join(result.failures)
    assert 500 not in result.statuses
    assert stack.fakes.count("llm.chat") == 0  # no feedback rows: nothing here may reach the model
    proof.record(
        kind="hostile",
        flow="livekit",
        name="hostile and broken deliveries",
        cases=result.cases,
        held=(
            f"0 x 5xx; statuses {dict(sorted(result.statuses.items()))}; "
            f"{result.queued} authenticated events queued, {result.settled} settled, 0 lost"
        ),
    )
