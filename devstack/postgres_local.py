"""Postgres for the local stack: ``DATABASE_URL``, else 127.0.0.1:5432, else an embedded server.

The embedded server is the ``pgserver`` package (Postgres binaries in a wheel) with its
data folder under ``.local/pg``; it listens on a Unix socket only. Migrations are
applied at every start; ``FRESH`` drops the database the stack owns (never one that
``DATABASE_URL`` names: that one is the user's).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger("devstack.postgres")


@dataclass
class LocalDatabase:
    url: str
    source: str  # "DATABASE_URL" | "127.0.0.1:5432" | "embedded"
    server: Any = None  # the pgserver handle, kept alive while the stack runs

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ensure_database(admin_url: str, name: str, fresh: bool) -> str:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        if fresh:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            log.info("created database %s", name)
    return _with_dbname(admin_url, name)


def _with_dbname(url: str, name: str) -> str:
    base, sep, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + (sep + query if sep else "")


def resolve(
    database_url: str | None,
    *,
    state_dir: Path,
    db_name: str = "exactly_once",
    fresh: bool = False,
    admin_url: str | None = None,
    probe: str = "127.0.0.1:5432",
) -> LocalDatabase:
    """Pick the database by the rules above and make sure it exists."""
    if database_url:
        return LocalDatabase(database_url, "DATABASE_URL")
    host, _, port = probe.rpartition(":")
    if port_answers(host, int(port)):
        admin = admin_url or f"postgresql://postgres@{probe}/postgres"
        try:
            return LocalDatabase(_ensure_database(admin, db_name, fresh), probe)
        except psycopg.OperationalError as exc:
            log.warning("%s answers but refuses %s (%s); using an embedded server", probe, admin, exc)
    return _embedded(state_dir / "pg", db_name, fresh)


def _embedded(pgdata: Path, db_name: str, fresh: bool) -> LocalDatabase:
    try:
        import pgserver
    except ImportError as exc:  # requirements-dev.txt installs it; say so plainly if it is missing
        raise RuntimeError(
            "no DATABASE_URL, nothing on 127.0.0.1:5432 and the pgserver package is missing: `make install`"
        ) from exc
    if fresh and pgdata.exists():
        import shutil

        shutil.rmtree(pgdata)
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(  # type: ignore[attr-defined]
        pgdata, cleanup_mode="stop"
    )
    url = _ensure_database(server.get_uri(), db_name, fresh=False)
    return LocalDatabase(url, "embedded", server)


def migrate(url: str) -> list[str]:
    from exactly_once.ops.migrate import migrate as apply

    with psycopg.connect(url, autocommit=True) as conn:
        return apply(conn)
