"""One hostile corpus for every provider that signs (or shares a secret with) its deliveries.

A ``Spec`` says how the provider signs, where the event id lives and what success looks like; ``corpus(spec)``
turns it into 50+ cases: forged, missing and stale signatures, signatures over re-serialised JSON, replays,
content types, truncated and malformed JSON, deep nesting, huge arrays, oversized bodies, unicode edge cases,
missing and mistyped fields. Bodies are signed with the providers' own packages where one exists
(tests/generic_support.py: standardwebhooks, stripe, slack_sdk).
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.proofs.hostile import Case

Signer = Callable[[bytes, str, float | None], dict[str, str]]
UNAUTH = (401,)
REFUSED = (400, 401)  # an unreadable signature header: either is a right answer, never a 5xx
BAD = (400, 413, 415, 422)
MB = 1024 * 1024


@dataclass(frozen=True)
class Spec:
    provider: str
    function: str
    path: str
    ok: int
    body: Callable[[str], dict[str, Any]]  # a valid payload for this event id
    sign: Signer  # headers (content type included) for these bytes, this event id, signed at this time
    signature_header: str
    id_path: tuple[str | int, ...] | None  # where the id sits in the body; None: in a header
    timestamped: bool = False
    signs_body: bool = True  # False: a shared secret in a header (Unipile): the body is not covered
    max_body: int = MB
    #: the provider's own cases on top of the shared ones (WhatsApp: the GET handshake and its query string)
    extra: Callable[[], list[Case]] | None = None


def _set(doc: Any, path: tuple[str | int, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    target = doc
    for part in path[:-1]:
        target = target[part]
    if value is _DROP:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DROP = object()


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"n": value}
    return value


def corpus(spec: Spec) -> list[Case]:
    p = spec.provider
    n = iter(range(10_000))

    def fresh() -> str:
        return f"{p}-hostile-{next(n)}"

    def raw(doc: Any) -> bytes:
        return json.dumps(doc, separators=(",", ":")).encode()

    def sign(data: bytes, event_id: str, at: float | None = None) -> dict[str, str]:
        return {k.lower(): v for k, v in spec.sign(data, event_id, at).items()}

    def signed(name: str, data: bytes, status: Any, event_id: str, queued: int = 0, **kw: Any) -> Case | None:
        try:
            headers = sign(data, event_id)
        except UnicodeDecodeError:  # the provider's own signer takes text only: it cannot sign these bytes
            return None
        return Case(name, data, status, headers=headers, queued=queued, **kw)

    def with_id(name: str, value: Any, status: Any = None, queued: int = 1) -> Case:
        eid = fresh()
        doc = spec.body(eid)
        if spec.id_path is not None:
            doc = _set(doc, spec.id_path, value)
        return signed(name, raw(doc), status or (spec.ok, *BAD), eid, queued=queued)

    def authentic_ok(name: str, doc_or_bytes: Any, eid: str, queued: int = 1, **kw: Any) -> Case:
        data = doc_or_bytes if isinstance(doc_or_bytes, bytes) else raw(doc_or_bytes)
        return signed(name, data, spec.ok, eid, queued=queued, **kw)

    base_id = fresh()
    good = raw(spec.body(base_id))
    good_headers = sign(good, base_id, None)
    sig = spec.signature_header.lower()
    # a body whose bytes differ from what was signed: refused if the signature covers the body
    tampered = (
        (lambda name, data, eid: Case(name, data, UNAUTH, headers=sign(good, eid, None)))
        if spec.signs_body
        # the signature does not cover the body: the same event as "authentic", so a 2xx queues nothing new
        else (lambda name, data, eid: Case(name, data, (spec.ok, *BAD), headers=sign(good, eid, None), queued=0))
    )
    bom_id = fresh()  # a new event behind a BOM: queued once (as the event, or as a quarantine event)
    cases = [
        # -- the baseline, its replays, and the same event re-serialised
        Case("authentic", good, spec.ok, headers=good_headers, queued=1),
        Case("replayed as is", good, spec.ok, headers=good_headers),
        Case("replayed, signed again", good, spec.ok, headers=sign(good, base_id, None)),
        # -- signatures
        Case("no signature", raw(spec.body(fresh())), UNAUTH, headers={"content-type": "application/json"}),
        Case("signature empty", good, REFUSED, headers={**good_headers, sig: ""}),
        Case("signature of another body", raw(spec.body(fresh())), UNAUTH, headers=good_headers)
        if spec.signs_body
        else Case("secret of another provider", good, UNAUTH, headers={**good_headers, sig: "whsec_" + "x" * 32}),
        Case("signature truncated", good, REFUSED, headers={**good_headers, sig: good_headers[sig][:-6]}),
        Case("signature 100 kB", good, REFUSED, headers={**good_headers, sig: "v1," + "a" * 100_000}),
        Case(
            "signature non-ASCII", good, REFUSED, headers={**good_headers, sig: good_headers[sig][:-2] + "\u00e9\u00e9"}
        ),
        Case(
            "signature in the query string only",
            good,
            UNAUTH,
            query=f"{sig}=" + good_headers[sig].replace("=", "%3D"),
            headers={"content-type": "application/json"},
        ),
        tampered("re-serialised JSON, original signature", json.dumps(json.loads(good), indent=2).encode(), base_id),
        tampered("keys re-ordered, original signature", json.dumps(json.loads(good), sort_keys=True).encode(), base_id),
        tampered("one byte appended", good + b" ", base_id),
        tampered(
            "unicode re-escaped",
            good.replace(b"e", b"\\u0065", 1) if b'"e' in good or b"e" in good else good + b"\n",
            base_id,
        ),
        # -- content types (the signature is right)
        Case("xml content type", good, (415,), headers={**good_headers, "content-type": "application/xml"}),
        Case(
            "multipart content type",
            good,
            (415,),
            headers={**good_headers, "content-type": "multipart/form-data; boundary=x"},
        ),
        Case("jsonp lookalike", good, (415,), headers={**good_headers, "content-type": "application/jsonp"}),
        # -- size, before anything else
        Case(
            "oversized, unsigned",
            b'{"pad":"' + b"x" * spec.max_body + b'"}',
            (413,),
            headers={"content-type": "application/json"},
        ),
        # -- authentic bytes that are not a readable event: refused with a JSON error, or quarantined
        signed("empty body", b"", (spec.ok, *BAD), fresh(), queued=1),
        signed("truncated JSON", good[: len(good) // 2], (spec.ok, *BAD), fresh(), queued=1),
        signed("JSON null", b"null", (spec.ok, *BAD), fresh(), queued=1),
        signed("JSON array", b"[1,2]", (spec.ok, *BAD), fresh(), queued=1),
        signed("JSON string", b'"event"', (spec.ok, *BAD), fresh(), queued=1),
        signed("utf-8 BOM", b"\xef\xbb\xbf" + raw(spec.body(bom_id)), (spec.ok, *BAD), bom_id, queued=1),
        signed("invalid utf-8", good[:-2] + b"\xff\xfe" + good[-2:], (spec.ok, *BAD), fresh(), queued=1),
        signed("utf-16", json.dumps(spec.body(fresh())).encode("utf-16"), (spec.ok, *BAD), fresh(), queued=1),
        signed("nesting 10k deep", b"[" * 10_000 + b"]" * 10_000, (spec.ok, *BAD), fresh(), queued=1),
        signed(
            "nesting 100 deep in the event",
            raw({**spec.body(fresh()), "deep": _nested(100)}),
            (spec.ok, *BAD),
            fresh(),
            queued=1,
        ),
        signed("NaN", raw(spec.body(fresh()))[:-1] + b',"x":NaN}', (spec.ok, *BAD), fresh(), queued=1),
        signed("1e400", raw(spec.body(fresh()))[:-1] + b',"x":1e400}', (spec.ok, *BAD), fresh(), queued=1),
        signed(
            "integer of 5000 digits",
            raw(spec.body(fresh()))[:-1] + b',"x":' + b"9" * 5000 + b"}",
            (spec.ok, *BAD),
            fresh(),
            queued=1,
        ),
        signed(
            "huge array", raw({**spec.body(fresh()), "big": list(range(100_000))}), (spec.ok, *BAD), fresh(), queued=1
        ),
        signed("oversized, signed", raw({**spec.body(fresh()), "pad": "x" * spec.max_body}), (413,), fresh()),
        # -- the id: missing, mistyped, odd
        with_id("id missing", _DROP),
        with_id("id null", None),
        with_id("id number", 12345),
        with_id("id object", {"id": "x"}),
        with_id("id list", ["a"]),
        with_id("id empty", ""),
        with_id("id 10k chars", "i" * 10_000),
        with_id("id emoji", "\U0001f4e7-id"),
        with_id("id RTL override and zero-width", "id\u202e\u200d"),
        with_id("id lone surrogate", "id\ud800"),
        with_id("id NUL", "id\x00x"),
        with_id("id with path and SQL characters", "../../x'; DROP TABLE event_log;--"),
        # -- authentic, odd but valid
        authentic_ok("extra unknown fields", {**spec.body(b := fresh()), "zzz": {"unknown": [1, 2, 3]}}, b),
        authentic_ok(
            "text with emoji, RTL and combining marks",
            {**spec.body(b := fresh()), "note": "\U0001f600 \u202e e\u0301"},
            b,
        ),
        authentic_ok("escaped lone surrogate in a field", raw(spec.body(b := fresh()))[:-1] + b',"note":"\\udc00"}', b),
        authentic_ok("escaped NUL in a field", raw(spec.body(b := fresh()))[:-1] + b',"note":"a\\u0000b"}', b),
        Case(
            "content type with charset",
            (d := raw(spec.body(b := fresh()))),
            spec.ok,
            headers={**sign(d, b, None), "content-type": "application/json; charset=utf-8"},
            queued=1,
        ),
        Case(
            "header names in capitals",
            (d := raw(spec.body(b := fresh()))),
            spec.ok,
            headers={k.upper(): v for k, v in sign(d, b, None).items()},
            queued=1,
        ),
        Case(
            "base64-encoded by API Gateway",
            (d := raw(spec.body(b := fresh()))),
            spec.ok,
            headers=sign(d, b, None),
            queued=1,
            tweak=_base64,
        ),
        Case("base64 flag on a non-base64 body", good, (400,), headers=good_headers, tweak=_flag_only),
    ]
    if spec.timestamped:
        e1, e2, e3 = fresh(), fresh(), fresh()
        d1, d2, d3 = raw(spec.body(e1)), raw(spec.body(e2)), raw(spec.body(e3))
        cases += [
            Case("signed an hour ago (replay window passed)", d1, UNAUTH, headers=sign(d1, e1, time.time() - 3600)),
            Case("signed an hour ahead", d2, UNAUTH, headers=sign(d2, e2, time.time() + 3600)),
            Case("signed 60 s ago", d3, spec.ok, headers=sign(d3, e3, time.time() - 60), queued=1),
        ]
    if spec.extra is not None:
        cases += spec.extra()
    return [c for c in cases if c is not None]


def _base64(event: dict[str, Any]) -> None:
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True


def _flag_only(event: dict[str, Any]) -> None:
    event["isBase64Encoded"] = True
