"""Two deploys migrating one fresh database at once: each migration applied once, neither fails."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import psycopg

from exactly_once.ops import migrate
from tests.conftest import PG_ADMIN_URL


def test_concurrent_runners_on_a_fresh_database_apply_each_migration_once():
    name = f"eo_migrate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    runners = 4
    start = threading.Barrier(runners)
    applied: list[list[str]] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                start.wait()
                applied.append(migrate.migrate(conn))
        except BaseException as exc:  # the test reports every runner's failure
            failures.append(exc)

    try:
        threads = [threading.Thread(target=run) for _ in range(runners)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert failures == []
        every = sorted(p.stem for p in migrate.MIGRATIONS_DIR.glob("*.sql"))
        # Between them the runners applied every migration exactly once.
        assert sorted(v for run_applied in applied for v in run_applied) == every
        with psycopg.connect(url, autocommit=True) as conn:
            rows: list[Any] = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        assert [r[0] for r in rows] == every
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
