"""Fake OpenAI-compatible chat completions: ``POST /openai/v1/chat/completions``.

Every call is recorded as kind ``llm.chat`` with the room as key (``metadata.room_sid``,
else ``room_sid:`` / ``room_name:`` in the prompt), so a test counts analyses per room.
``fakes.behave("llm.chat")`` makes calls slow, hang or fail (OpenAI's error shape; a 429 with ``retry-after``).
The answer is OpenAI-shaped; its content is a JSON analysis naming the call's number, so a
test can tell which call's result was stored.

Checked first, as OpenAI checks them, and recorded as refused (never a call the model ran) when
wrong: ``Authorization: Bearer <key>`` equal to ``fakes.credentials["LLM_API_KEY"]`` (401
``invalid_api_key``), a JSON object body with a ``model`` string and a non-empty ``messages``
list of ``{role, content}`` with a known role (400 ``invalid_request_error``).
"""

from __future__ import annotations

import hmac
import itertools
import json
import re
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.fakes import FakeProviders, FakeRequest, Reply

KIND = "llm.chat"
_ROOM = re.compile(r"^room_(?:sid|name):[ \t]*(\S+)", re.MULTILINE)
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


def shape_error(body: Any) -> str | None:
    """Why OpenAI would answer 400 to this chat completion body, or None."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"messages[{i}].role must be one of {sorted(ROLES)}"
        if message["role"] != "assistant" and not isinstance(message.get("content"), str | list):
            return f"messages[{i}].content is required"
    return None


def _refusal(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


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
        room = room_of(body) if isinstance(body, dict) else "unknown"
        key = fakes.credentials["LLM_API_KEY"]
        if not hmac.compare_digest(request.headers.get("authorization", "").encode(), f"Bearer {key}".encode()):
            refusal = _refusal("Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
            return fakes.refuse(KIND, room, request, 401, "api key", refusal)
        problem = shape_error(body)
        if problem:
            return fakes.refuse(KIND, room, request, 400, problem, _refusal(problem, "invalid_request_error", None))
        assert isinstance(body, dict)  # shape_error checked it
        call = fakes.record(KIND, room, request)
        with fakes.lock:
            number = next(numbers)
            idempotency_keys.append(request.headers.get("idempotency-key", ""))
        failing = fakes.behave(KIND)
        if failing:
            fakes.failed(call)
            if failing.fail_status == 429:  # OpenAI's rate limit answer carries retry-after (seconds)
                limited = {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
                return 429, {"error": limited}, {"retry-after": "1"}
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
