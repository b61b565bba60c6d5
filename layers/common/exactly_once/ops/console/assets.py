"""The console's page and its static files, served with a strict Content-Security-Policy.

Only the files named in ``ASSETS`` are served (no path from the request reaches the file system).
The page has no inline script or style: ``script-src 'self'`` and ``style-src 'self'`` hold, and
the API is the only place it connects to.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

STATIC = Path(__file__).parent / "static"
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


@functools.cache
def _read(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def asset_response(name: str) -> dict[str, Any] | None:
    """The API Gateway answer for ``name`` (``index.html`` for the page), or None when there is no such file."""
    content_type = ASSETS.get(name)
    if content_type is None:
        return None
    return {
        "statusCode": 200,
        "headers": {"content-type": content_type, "cache-control": "no-cache", **SECURITY_HEADERS},
        "body": _read(name),
    }
