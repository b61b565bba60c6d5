"""The LiveKit adapter alone: tokens made by LiveKit's own SDK, bodies as its server sends them."""

from __future__ import annotations

import time

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devstack.lambda_runtime import apigw_event
from exactly_once.core.errors import ConfigurationError, UnauthorizedError
from exactly_once.core.events import QUARANTINE_KIND
from exactly_once.flows.livekit.adapter import LiveKitAdapter, body_sha256, room_group
from exactly_once.ingest.adapters.base import QuarantinedBadRequestError
from exactly_once.ingest.apigw import Request
from tests.livekit_support import API_KEY, API_SECRET, URL, encode, headers, room_event, sign

ADAPTER = LiveKitAdapter(API_KEY, API_SECRET)


def request(body: bytes, hdrs: dict[str, str]) -> Request:
    return Request.from_apigw_v2(apigw_event("POST", URL, body, hdrs))


def test_a_livekit_signed_room_finished_becomes_one_event_keyed_by_id_grouped_by_room():
    body = encode(room_event(event_id="EV_1", sid="RM_1"))
    req = request(body, headers(body))
    ADAPTER.check_content_type(req)
    ADAPTER.authenticate(req)
    [event] = ADAPTER.split(req).events
    assert (event.key, event.group, event.kind) == ("livekit:EV_1", "livekit:room:RM_1", "room_finished")


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_any_change_to_a_signed_body_is_refused(position, flip):
    body = encode(room_event(event_id="EV_tamper"))
    token = sign(body)
    tampered = bytearray(body)
    tampered[position % len(body)] ^= flip
    with pytest.raises(UnauthorizedError):
        ADAPTER.authenticate(request(bytes(tampered), {"authorization": token}))


def test_the_sha256_claim_is_standard_padded_base64_as_livekit_writes_it():
    body = b'{"event":"room_started"}'
    claims = jwt.decode(sign(body), API_SECRET, algorithms=["HS256"], issuer=API_KEY)
    assert claims["sha256"] == body_sha256(body) and claims["sha256"].endswith("=")


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_tokens_in_another_algorithm_are_refused_even_with_the_right_secret(algorithm):
    body = encode(room_event())
    claims = jwt.decode(sign(body), API_SECRET, algorithms=["HS256"], issuer=API_KEY)
    token = jwt.encode(claims, API_SECRET, algorithm=algorithm)
    with pytest.raises(UnauthorizedError):
        ADAPTER.authenticate(request(body, {"authorization": token}))


def test_a_token_without_the_body_hash_is_refused():
    body = encode(room_event())
    claims = jwt.decode(sign(body), API_SECRET, algorithms=["HS256"], issuer=API_KEY)
    del claims["sha256"]
    with pytest.raises(UnauthorizedError):
        ADAPTER.authenticate(request(body, {"authorization": jwt.encode(claims, API_SECRET, algorithm="HS256")}))


def test_a_token_not_yet_valid_beyond_the_leeway_is_refused():
    body = encode(room_event())
    claims = jwt.decode(sign(body), API_SECRET, algorithms=["HS256"], issuer=API_KEY)
    claims["nbf"] += 60
    with pytest.raises(UnauthorizedError):
        ADAPTER.authenticate(request(body, {"authorization": jwt.encode(claims, API_SECRET, algorithm="HS256")}))


def test_malformed_json_carries_its_raw_bytes_to_quarantine():
    raw = b"{not json"
    with pytest.raises(QuarantinedBadRequestError) as caught:
        ADAPTER.split(request(raw, headers(raw)))
    assert caught.value.status == 400
    assert caught.value.event.kind == QUARANTINE_KIND and caught.value.event.payload["raw"] == raw.decode()


def test_egress_and_participant_events_share_the_room_group():
    assert room_group(room_event("egress_ended", sid="RM_9")) == "livekit:room:RM_9"
    assert room_group(room_event("participant_joined", sid="RM_9")) == "livekit:room:RM_9"
    assert room_group({"event": "ingress_started", "ingressInfo": {"roomName": "n"}}) == "livekit:room:n"


def _token_expiring_in(body: bytes, seconds: int) -> str:
    claims = jwt.decode(sign(body), API_SECRET, algorithms=["HS256"], issuer=API_KEY)
    claims["exp"] = int(time.time()) + seconds
    return jwt.encode(claims, API_SECRET, algorithm="HS256")


@pytest.mark.parametrize("seconds", [86_400 + 120, 10 * 365 * 86_400])
def test_a_token_that_lives_longer_than_a_day_is_refused(seconds):
    # LiveKit's own tokens live 5 minutes: one valid for days is a captured credential replayed at will (issue 16)
    body = encode(room_event())
    with pytest.raises(UnauthorizedError) as caught:
        ADAPTER.authenticate(request(body, {"authorization": _token_expiring_in(body, seconds)}))
    assert caught.value.code == "token_lifetime"


def test_a_token_that_lives_an_hour_is_accepted():
    body = encode(room_event())
    ADAPTER.authenticate(request(body, {"authorization": _token_expiring_in(body, 3600)}))


@pytest.mark.parametrize("secret", ["", "short", "x" * 31, "é" * 15])
def test_an_api_secret_shorter_than_32_bytes_refuses_to_start(secret):
    with pytest.raises(ConfigurationError, match="32 bytes"):
        LiveKitAdapter(API_KEY, secret)


def test_an_api_secret_of_32_bytes_starts():
    LiveKitAdapter(API_KEY, "s" * 32)
