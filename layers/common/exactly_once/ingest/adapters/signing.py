"""What signed webhooks share: HMAC-SHA256, constant-time matching, a timestamp window, a clock.

Every provider signs the raw body with HMAC-SHA256 and differs only in what it
signs (``{id}.{ts}.{body}``, ``{t}.{body}``, ``v0:{ts}:{body}``, the body) and
how it encodes the digest (hex, base64). Adapters build the signed bytes and
call these helpers; time comes from an injectable clock so tests can move it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable

from exactly_once.core.errors import UnauthorizedError
from exactly_once.core.numbers import ascii_int

Clock = Callable[[], float]
SYSTEM_CLOCK: Clock = time.time

#: Headers carry a handful of signatures during a key rotation; more is an attack on CPU.
MAX_SIGNATURES = 16


def hmac_sha256(key: bytes | str, message: bytes) -> bytes:
    return hmac.new(key.encode() if isinstance(key, str) else key, message, hashlib.sha256).digest()


def matches_any(expected: Iterable[bytes], given: Iterable[bytes]) -> bool:
    """True if any given signature equals any expected one; each pair compared in constant time.

    Every pair is compared (no early exit) so the time taken does not tell which one matched.
    """
    candidates = list(given)[:MAX_SIGNATURES]
    found = False
    for want in expected:
        for got in candidates:
            found |= hmac.compare_digest(want, got)
    return found


def decode_hex(value: str) -> bytes | None:
    try:
        return bytes.fromhex(value.strip())
    except ValueError:
        return None


def decode_b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def prefixed_hex(header: str | None, prefix: str) -> bytes | None:
    """The digest of ``sha256=<hex>`` / ``v0=<hex>``, or None if the header is absent or malformed."""
    if not header or not header.startswith(prefix):
        return None
    return decode_hex(header[len(prefix) :])


def check_timestamp(raw: str | None, *, now: float, tolerance: int, name: str) -> int:
    """The signed timestamp (unix seconds) if it is within ``tolerance`` of ``now``, both ways.

    A timestamp too far in the future is refused as well as a stale one: a
    signature made for later is a replay waiting to happen, whatever the reason.
    """
    if raw is None or not raw.strip():
        raise UnauthorizedError(f"{name} is missing", code="missing_timestamp")
    stamp = ascii_int(raw)
    if stamp is None:
        raise UnauthorizedError(f"{name} must be unix seconds", code="invalid_timestamp")
    if stamp < now - tolerance:
        raise UnauthorizedError(f"{name} is older than {tolerance} s", code="stale_timestamp")
    if stamp > now + tolerance:
        raise UnauthorizedError(f"{name} is more than {tolerance} s in the future", code="future_timestamp")
    return stamp


def require(condition: bool, message: str, code: str = "invalid_signature") -> None:
    """Raise the 401 every adapter answers when a signature does not verify."""
    if not condition:
        raise UnauthorizedError(message, code=code)
