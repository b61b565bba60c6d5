"""The local stack's own SQL (state, storm counts, the naive baseline), in ``devstack/sql/*.sql``.

Same format as the library's: ``-- name: <name>`` blocks, ``%(name)s`` parameters only.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import LiteralString

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@functools.cache
def _all() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(Path(__file__).with_name("sql").glob("*.sql")):
        parts = _NAME.split(path.read_text(encoding="utf-8"))
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            found[name] = body.strip().rstrip(";")
    return found


def q(name: str) -> LiteralString:
    return _all()[name]  # packaged files, never input
