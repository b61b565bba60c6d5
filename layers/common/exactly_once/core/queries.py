"""Every SQL statement of the library, kept in ``sql/*.sql`` and looked up by name.

A block starts with ``-- name: <name>``; parameters are ``%(name)s`` only.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, LiteralString

if TYPE_CHECKING:
    import psycopg

_SQL_DIR = Path(__file__).parent.parent / "sql"
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@functools.cache
def _all() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(_SQL_DIR.glob("*.sql")):
        parts = _NAME.split(path.read_text(encoding="utf-8"))
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in found:
                raise ValueError(f"query {name} is defined twice ({path.name})")
            found[name] = body.strip().rstrip(";")
    return found


def q(name: str) -> LiteralString:
    """The statement ``name``. The files are part of the package, never built from input."""
    return _all()[name]  # file text, not user input


def rows(conn: psycopg.Connection[Any], name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of statement ``name`` as dicts (column name -> value)."""
    return as_dicts(conn.execute(q(name), params))


def as_dicts(cur: psycopg.Cursor[Any]) -> list[dict[str, Any]]:
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
