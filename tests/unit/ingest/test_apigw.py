"""The API Gateway request: base64 bodies decoded to the exact bytes; Request.json refuses what no provider
sends and cleans what Postgres and SQS cannot hold."""

from __future__ import annotations

import base64

import pytest

from devstack.lambda_runtime import apigw_event
from exactly_once.core.errors import BadRequestError
from exactly_once.ingest.apigw import MAX_JSON_DEPTH, Request


def _request(raw: bytes) -> Request:
    return Request("POST", "/", raw, {}, {})


def _nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"1" + b"}" * (depth - 1)


# -- The body as API Gateway hands it over ------------------------------------------------------


def test_base64_bodies_are_decoded_to_the_exact_bytes():
    raw = "h\u00e9llo \U0001f600".encode()
    event = apigw_event("POST", "http://h/x", raw)
    event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    assert Request.from_apigw_v2(event).raw_body == raw


def test_invalid_base64_is_a_bad_request():
    event = apigw_event("POST", "http://h/x", b"")
    event["body"], event["isBase64Encoded"] = "***", True
    with pytest.raises(BadRequestError):
        Request.from_apigw_v2(event)


# -- Request.json -------------------------------------------------------------------------------


def test_deeply_nested_json_is_a_bad_request_not_a_crash():
    request = Request.from_apigw_v2(apigw_event("POST", "http://h/x", b"[" * 100_000 + b"]" * 100_000))
    with pytest.raises(BadRequestError):
        request.json()


def test_nesting_up_to_the_limit_parses_and_beyond_is_400():
    assert _request(_nested(MAX_JSON_DEPTH)).json() is not None
    with pytest.raises(BadRequestError) as err:
        _request(_nested(MAX_JSON_DEPTH + 1)).json()
    assert err.value.code == "invalid_json"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"])
def test_non_finite_numbers_are_400(literal):
    with pytest.raises(BadRequestError):
        _request(b'{"n": ' + literal + b"}").json()


def test_nul_and_lone_surrogates_become_replacement_characters_in_keys_and_values():
    doc = _request(b'{"a\\u0000": ["x\\ud800y", "\\udfff"], "ok": "\\u00e9\\ud83d\\ude00"}').json()
    assert doc == {"a\ufffd": ["x\ufffdy", "\ufffd"], "ok": "\u00e9\U0001f600"}  # a surrogate pair stays a character


@pytest.mark.parametrize("where", ["queryStringParameters", "pathParameters"])
def test_nul_or_lone_surrogate_in_the_url_is_400(where):
    for value in ("a\x00b", "a\ud800"):
        with pytest.raises(BadRequestError) as err:
            Request.from_apigw_v2({"body": "", where: {"p": value}})
        assert err.value.code == "invalid_parameter"
