"""Forward-only SQL migrations in ``migrations/NNNN_name.sql``, each in its own transaction.

Each file runs under a transaction-scoped advisory lock, so two deploys (or a
deploy and ``make migrate``) never apply the same file twice. A file runs in a
transaction of its own because a value added by ``ALTER TYPE ... ADD VALUE``
cannot be used in the transaction that added it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

MIGRATIONS_DIR = Path(__file__).parent.parent / "migrations"
_LOCK = 0x6578_6F6E_6365  # "exonce": one lock id for every migration run


def pending(conn: psycopg.Connection[Any]) -> list[Path]:
    with conn.transaction():
        # Under the lock: two runners on a fresh database would otherwise race on CREATE TABLE
        # IF NOT EXISTS (a unique violation on the catalogue) before either reached a migration.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    return [p for p in sorted(MIGRATIONS_DIR.glob("*.sql")) if p.stem not in done]


def migrate(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply every pending migration; return the versions applied now."""
    applied: list[str] = []
    for path in pending(conn):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            row = conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (path.stem,)).fetchone()
            if row:
                continue  # another runner applied it while we waited for the lock
            conn.execute(path.read_text(encoding="utf-8"))  # a packaged file, never input
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.stem,))
            applied.append(path.stem)
    return applied


def main() -> None:
    from exactly_once.core import db

    with db.connect() as conn:
        applied = migrate(conn)
    print("applied: " + (", ".join(applied) if applied else "nothing, schema is current"))


if __name__ == "__main__":
    main()
