"""LiveKit webhooks signed the way LiveKit's server signs them, with the livekit-api package
(AccessToken + the sha256 claim), and feedback rows to analyse."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import uuid
from typing import Any

from livekit import api

from tests.harness import TEST_SECRETS, Stack

URL = "http://127.0.0.1:3000/webhooks/livekit"
FUNCTION = "LiveKitIngestFunction"
API_KEY = TEST_SECRETS["LIVEKIT_API_KEY"]
API_SECRET = TEST_SECRETS["LIVEKIT_API_SECRET"]


def sign(body: bytes, *, ttl_seconds: int = 300, key: str = API_KEY, secret: str = API_SECRET) -> str:
    """The Authorization value LiveKit sends: a JWT (iss = API key, 5-minute life) with sha256 of the body."""
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    token = api.AccessToken(key, secret).with_sha256(digest).with_ttl(datetime.timedelta(seconds=ttl_seconds))
    return token.to_jwt()


def headers(body: bytes, **kw: Any) -> dict[str, str]:
    return {"content-type": "application/webhook+json", "authorization": sign(body, **kw)}


def room_event(
    kind: str = "room_finished", *, sid: str = "RM_ZbhL7XyXTZxz", name: str = "feedback-call-1", event_id: str = ""
) -> dict[str, Any]:
    """A webhook body as LiveKit's server serialises it (protobuf JSON, camelCase)."""
    body: dict[str, Any] = {
        "event": kind,
        "room": {
            "sid": sid,
            "name": name,
            "emptyTimeout": 300,
            "departureTimeout": 20,
            "creationTime": "1732262400",
            "enabledCodecs": [{"mime": "audio/opus"}],
        },
        "id": event_id or f"EV_{uuid.uuid4().hex[:12]}",
        "createdAt": "1732262460",
    }
    if kind.startswith("participant_"):
        body["participant"] = {"sid": "PA_abc", "identity": "caller-1", "state": "ACTIVE", "joinedAt": "1732262401"}
    if kind.startswith("egress_"):
        del body["room"]
        body["egressInfo"] = {"egressId": "EG_1", "roomId": sid, "roomName": name, "status": "EGRESS_COMPLETE"}
    return body


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def post(stack: Stack, body: bytes, hdrs: dict[str, str] | None = None):
    return stack.invoke_http(FUNCTION, "POST", URL, body, headers(body) if hdrs is None else hdrs)


def add_feedback(db: Any, sid: str | None = "RM_ZbhL7XyXTZxz", name: str = "feedback-call-1") -> str:
    row = db.execute(
        "INSERT INTO user_feedback (user_id, room_sid, room_name, transcript) VALUES (%s, %s, %s, %s) RETURNING id",
        ("user-1", sid, name, "agent: how was the call?\nuser: great, thanks"),
    ).fetchone()
    return str(row[0])


def feedback_row(db: Any, feedback_id: str) -> dict[str, Any]:
    cur = db.execute(
        "SELECT status::text, attempts, claim_token, lease_until, last_error, analysis, completed_at"
        " FROM user_feedback WHERE id = %s",
        (feedback_id,),
    )
    names = [c.name for c in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def reap(stack: Stack) -> int:
    """Run the scheduled ClaimReaperFunction (every registered reaper); return what the LiveKit one handled."""
    from devstack.lambda_runtime import LambdaContext

    context = LambdaContext(function_name="ClaimReaperFunction", timeout_s=60)
    return int(stack.handler("ClaimReaperFunction")({}, context)["livekit_feedback"])
