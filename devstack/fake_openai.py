"""Fake OpenAI-compatible chat completions: ``POST /openai/v1/chat/completions``.

Every call is recorded as kind ``llm.chat`` with the room as key (``metadata.room_sid``,
else ``room_sid:`` / ``room_name:`` in the prompt), so a test counts analyses per room.
``fakes.behave("llm.chat")`` makes calls slow, hang or fail (OpenAI's error shape).
The answer is OpenAI-shaped; its content is a JSON analysis naming the call's number, so a
test can tell which call's result was stored.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.fakes import FakeProviders, FakeRequest, Reply

KIND = "llm.chat"
_ROOM = re.compile(r"^room_(?:sid|name):[ \t]*(\S+)", re.MULTILINE)


def room_of(body: dict[str, Any]) -> str:
    meta = body.get("metadata")
    if isinstance(meta, dict) and (meta.get("room_sid") or meta.get("room_name")):
        return str(meta.get("room_sid") or meta.get("room_name"))
    for message in body.get("messages") or []:
        match = _ROOM.search(str(message.get("content") if isinstance(message, dict) else ""))
        if match:
            return match.group(1)
    return "unknown"


def install(fakes: FakeProviders) -> None:
    numbers = itertools.count(1)
    idempotency_keys: list[str] = []  # the Idempotency-Key of every call, in order
    fakes.state["llm_idempotency_keys"] = idempotency_keys

    @fakes.route("POST", r"/openai/v1/chat/completions")
    def chat(request: FakeRequest) -> Reply:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            fakes.record(KIND, "unknown", request)
            return 400, {"error": {"message": "body must be a JSON object", "type": "invalid_request_error"}}
        fakes.record(KIND, room_of(body), request)
        with fakes.lock:
            number = next(numbers)
            idempotency_keys.append(request.headers.get("idempotency-key", ""))
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return 401, {"error": {"message": "missing API key", "type": "invalid_request_error"}}
        failing = fakes.behave(KIND)
        if failing:
            return failing.fail_status, {"error": {"message": "fake overload", "type": "server_error", "code": None}}
        analysis = {"summary": f"call {number} analysed", "sentiment": "positive", "issues": [], "call": number}
        return 200, {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or "fake-model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": json.dumps(analysis)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        }
