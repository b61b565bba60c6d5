"""LiveKit: a corpus of hostile and broken deliveries against the real ingest handler (and the worker behind it).

Every authenticated body is queued exactly once, as an event or (unreadable, too large) carried to quarantine;
a replay and anything unauthenticated queue nothing; no case is a 5xx. The token cases follow docs/livekit.md:
HS256 only whatever the header says, ``iss`` = the API key, ``sha256`` = standard padded base64 of the raw
body, a 10 s leeway on ``nbf``/``exp``, a ``Bearer `` prefix tolerated."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import Callable
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


def _flag_only(event: dict[str, Any]) -> None:
    event["isBase64Encoded"] = True


def _segment(doc: dict[str, Any]) -> bytes:
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).rstrip(b"=")


def with_header(body: bytes, header: dict[str, Any], change: dict[str, Any] | None = None) -> dict[str, str]:
    """A token HMAC-SHA256-signed with the right secret over the right claims, under a header we choose."""
    claims = {**_claims(body), **(change or {})}
    signing_input = _segment(header) + b"." + _segment(claims)
    mac = hmac.new(API_SECRET.encode(), signing_input, hashlib.sha256).digest()
    token = signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")
    return {"content-type": CT, "authorization": token.decode()}


def signed_at_send(body: bytes, **kw: Any) -> Callable[[dict[str, Any]], None]:
    """Sign when the request is sent, not when the corpus is built: for tokens a few seconds off the clock."""

    def tweak(event: dict[str, Any]) -> None:
        now = int(time.time())
        claims = {**_claims(body), **{k: now + v for k, v in kw.items()}}
        event["headers"]["authorization"] = jwt.encode(claims, API_SECRET, algorithm="HS256")

    return tweak


def _answer(**expected: int) -> Callable[[int, dict[str, str], bytes], bool]:
    return lambda status, headers, data: all(json.loads(data).get(k) == v for k, v in expected.items())


ACCEPTED = _answer(accepted=1, duplicates=0)


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
        *more_cases(good),
    ]


def more_cases(good: bytes) -> list[Case]:
    """The rest of the issue's list: re-serialised bodies, JWT header tricks, clock edges, sizes, ids, types."""
    spaced = json.dumps(json.loads(good), indent=2).encode()
    reordered = json.dumps(json.loads(good), sort_keys=True, separators=(",", ":")).encode()
    escaped = good.replace(b'"event"', b'"\\u0065vent"', 1)
    unpadded = base64.b64encode(hashlib.sha256(good).digest()).decode().rstrip("=")
    header = {"alg": "HS256", "typ": "JWT"}
    huge = encode({**room_event(event_id="EV_h_huge"), "big": list(range(100_000))})
    oversized = encode({**room_event(event_id="EV_h_oversized"), "pad": "x" * MAX_BODY})
    fresh = _event(n="fresh-token")
    leeway_exp = _event(n="leeway-exp")
    leeway_nbf = _event(n="leeway-nbf")
    past_leeway = _event(n="past-leeway")

    def ok(name: str, body: bytes, **kw: Any) -> Case:
        return Case(name, body, 200, headers=kw.pop("headers", None) or signed(body), queued=1, **kw)

    def quarantined_400(name: str, body: bytes) -> Case:
        return Case(name, body, 400, headers=signed(body), queued=1)

    def with_id(name: str, raw_id: bytes) -> Case:
        body = encode(room_event(event_id="EV_ID_PLACEHOLDER")).replace(b'"EV_ID_PLACEHOLDER"', raw_id)
        return ok(name, body, check=ACCEPTED)

    return [
        # -- the original token over the same event re-serialised: other bytes, so another sha256
        Case("re-serialised JSON, original token", spaced, 401, headers=signed(good)),
        Case("keys re-ordered, original token", reordered, 401, headers=signed(good)),
        Case("unicode re-escaped, original token", escaped, 401, headers=signed(good)),
        Case("re-serialised JSON, signed as sent", spaced, 200, headers=signed(spaced), check=_answer(duplicates=1)),
        # -- JWT header tricks: the token must not choose its algorithm
        Case("RS256 header over an HMAC signature", good, 401, headers=with_header(good, {**header, "alg": "RS256"})),
        Case("alg none header over an HMAC signature", good, 401, headers=with_header(good, {**header, "alg": "none"})),
        Case("alg in lower case", good, 401, headers=with_header(good, {**header, "alg": "hs256"})),
        Case("no alg in the header", good, 401, headers=with_header(good, {"typ": "JWT"})),
        Case(
            "alg none, empty signature",
            good,
            401,
            headers={
                "content-type": CT,
                "authorization": (_segment({"alg": "none"}) + b"." + _segment(_claims(good)) + b".").decode(),
            },
        ),
        ok(
            "kid header is not a key selector",
            (kid := _event(n="kid")),
            headers=with_header(kid, {**header, "kid": "../../../../dev/null"}),
            check=ACCEPTED,
        ),
        # -- claims
        Case("signed with the API key as secret", good, 401, headers=forged(good, {}, secret=API_KEY * 4)),
        Case("issuer in another case", good, 401, headers=forged(good, {"iss": API_KEY.lower()})),
        Case("sha256 standard base64 unpadded", good, 401, headers=forged(good, {"sha256": unpadded})),
        Case(
            "sha256 of the empty body",
            good,
            401,
            headers=forged(good, {"sha256": base64.b64encode(hashlib.sha256(b"").digest()).decode()}),
        ),
        Case("exp not a number", good, 401, headers=forged(good, {"exp": "soon"})),
        # LiveKit's tokens live 5 minutes: one valid for days is refused (issue 16), whatever it signs
        Case("exp two days ahead", good, 401, headers=forged(good, {"exp": int(time.time()) + 2 * 86_400})),
        Case("exp ten years ahead", good, 401, headers=forged(good, {"exp": int(time.time()) + 3650 * 86_400})),
        Case("exp 1e20", good, 401, headers=forged(good, {"exp": 10**20})),
        # PyJWT reads a numeric string as a number: the string form must not escape the expiry check
        Case(
            "exp a numeric string, an hour ago", good, 401, headers=forged(good, {"exp": str(int(time.time()) - 3600)})
        ),
        # -- the clock: LiveKit's tokens live 5 minutes, with a 10 s leeway either side
        ok("exp 5 s ago, inside the leeway", leeway_exp, tweak=signed_at_send(leeway_exp, exp=-5), check=ACCEPTED),
        ok("nbf 5 s ahead, inside the leeway", leeway_nbf, tweak=signed_at_send(leeway_nbf, nbf=5), check=ACCEPTED),
        Case(
            "exp 30 s ago, past the leeway",
            past_leeway,
            401,
            headers=signed(past_leeway),
            tweak=signed_at_send(past_leeway, exp=-30),
        ),
        ok("token signed just now", fresh, tweak=signed_at_send(fresh, exp=300), check=ACCEPTED),
        # -- how the token is carried
        Case("Basic scheme", good, 401, headers={**signed(good), "authorization": "Basic " + sign(good)}),
        Case(
            "two tokens, comma-separated",
            good,
            401,
            headers={**signed(good), "authorization": sign(good) + "," + sign(good)},
        ),
        Case(
            "Bearer prefix, token of another body",
            good,
            401,
            headers={**signed(good), "authorization": "Bearer " + sign(other_body())},
        ),
        Case(
            "token in the query string only",
            good,
            401,
            headers={"content-type": CT},
            query="access_token=" + sign(good),
        ),
        ok(
            "header names in capitals",
            (caps := _event(n="caps")),
            headers={k.upper(): v for k, v in signed(caps).items()},
            check=ACCEPTED,
        ),
        ok(
            "application/json content type",
            (plain := _event(n="plain-json")),
            headers={**signed(plain), "content-type": "application/json"},
            check=ACCEPTED,
        ),
        Case("xml content type", good, 415, headers={**signed(good), "content-type": "application/xml"}),
        Case(
            "multipart content type",
            good,
            415,
            headers={**signed(good), "content-type": "multipart/form-data; boundary=x"},
        ),
        Case("base64 flag on a non-base64 body", good, 400, headers=signed(good), tweak=_flag_only),
        # -- sizes
        ok("huge array, signed: too large to queue, quarantined", huge, check=ACCEPTED),
        Case("oversized, signed", oversized, 413, headers=signed(oversized)),
        # -- authentic but unreadable: 400, raw body quarantined first
        quarantined_400("utf-8 BOM", b"\xef\xbb\xbf" + _event(n="bom")),
        quarantined_400("utf-16", json.dumps(room_event(event_id="EV_h_utf16")).encode("utf-16")),
        quarantined_400("JSON string", b'"room_finished"'),
        quarantined_400("1e400", _event(n="1e400")[:-1] + b',"x":1e400}'),
        quarantined_400("integer of 5000 digits", _event(n="digits")[:-1] + b',"x":' + b"9" * 5000 + b"}"),
        quarantined_400(
            "nesting 65 deep in the event", _event(n="deep65")[:-1] + b',"x":' + b"[" * 64 + b"]" * 64 + b"}"
        ),
        ok(
            "nesting 60 deep in the event",
            _event(n="deep60")[:-1] + b',"x":' + b"[" * 58 + b"]" * 58 + b"}",
            check=ACCEPTED,
        ),
        # -- ids and text: unicode edge cases are stored (U+FFFD for what Postgres and SQS cannot carry)
        with_id("id emoji", json.dumps("EV_\U0001f4de_call").encode()),
        with_id("id lone surrogate (escaped)", b'"EV_lone\\ud800"'),
        with_id("id NUL (escaped)", b'"EV_nul\\u0000x"'),
        with_id("id RTL override and zero-width", json.dumps("EV_rtl\u202e\u200d").encode()),
        with_id("id 10k chars", json.dumps("EV_" + "i" * 10_000).encode()),
        with_id("id with path and SQL characters", json.dumps("../../x'; DROP TABLE event_log;--").encode()),
        ok("id object", _event(id={"id": "EV_obj"})),
        ok("text with emoji, RTL and combining marks", _event(note="\U0001f600 \u202e e\u0301"), check=ACCEPTED),
        ok(
            "duplicate id keys: the last one is the event",
            encode(room_event(event_id="EV_h_dup_last")).replace(b'"id":', b'"id":"EV_h_dup_first","id":', 1),
            check=ACCEPTED,
        ),
    ]


def other_body() -> bytes:
    return encode(room_event(event_id="EV_h_other"))


def test_livekit_hostile_corpus(stack, db, proof):
    # Every case's queue count is exact: an authentic delivery is queued once (event or quarantine), the rest not.
    cases = [dataclasses.replace(c, queued_exactly=True) for c in corpus()]
    result = run_corpus(stack, db, "LiveKitIngestFunction", PATH, cases)
    assert not result.failures, "\n".join(result.failures)
    assert len(cases) >= 50
    assert not any(s >= 500 for s in result.statuses)
    # Where the odd but authentic ones ended: too large to queue -> quarantined under its own key; the ids
    # Postgres and SQS cannot carry -> recorded with U+FFFD in their place.
    huge = db.execute("SELECT reason FROM quarantine WHERE event_key = 'livekit:EV_h_huge'").fetchall()
    assert len(huge) == 1 and "too large to queue" in huge[0][0], huge
    logged = {r[0] for r in db.execute("SELECT event_key FROM event_log WHERE provider = 'livekit'")}
    assert {"livekit:EV_lone\ufffd", "livekit:EV_nul\ufffdx", "livekit:EV_h_dup_last"} <= logged, logged
    assert stack.fakes.count("llm.chat") == 0  # no feedback rows: nothing here may reach the model
    proof.record(
        kind="hostile",
        flow="livekit",
        name="hostile and broken deliveries",
        cases=result.cases,
        held=(
            f"{sum(n for s, n in result.statuses.items() if s >= 500)} x 5xx; "
            f"statuses {dict(sorted(result.statuses.items()))}; {result.queued} authenticated events queued, "
            f"{result.settled} settled, {max(result.queued - result.settled, 0)} lost"
        ),
    )
