"""Fixtures: a fresh Postgres database per run, serialised moto, fake providers, the stack."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from devstack.aws_local import LocalAws
from devstack.fakes import FakeProviders
from devstack.moto_server import SerializedMotoServer
from tests.harness import TEST_SECRETS, Stack, stack_env

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database of its own for this run (and this xdist worker), migrated, dropped at the end."""
    from exactly_once.ops.migrate import migrate

    name = f"eo_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the run's database, every table emptied first."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
            )
        ]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
        yield conn


@pytest.fixture(scope="session")
def moto_server() -> Iterator[SerializedMotoServer]:
    server = SerializedMotoServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def local_aws(moto_server: SerializedMotoServer) -> LocalAws:
    return LocalAws(moto_server.url).provision()


@pytest.fixture(scope="session")
def fakes() -> Iterator[FakeProviders]:
    server = FakeProviders(credentials=TEST_SECRETS).start()  # the fakes expect what the functions present
    yield server
    server.stop()


@pytest.fixture
def stack(
    monkeypatch: pytest.MonkeyPatch, database_url: str, local_aws: LocalAws, fakes: FakeProviders, db: Any
) -> Iterator[Stack]:
    env = stack_env(local_aws, fakes, database_url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _reset_library_caches()
    stack = Stack(local_aws, fakes, env)
    stack.reset()
    yield stack
    _reset_library_caches()


def _reset_library_caches() -> None:
    """Forget what a warm container would keep: clients, the connection, every cached factory."""
    import sys

    from exactly_once.core import db

    db.reset()
    for name, module in list(sys.modules.items()):
        if not name.startswith("exactly_once") or module is None:
            continue
        for value in list(vars(module).values()):
            if callable(value) and hasattr(value, "cache_clear") and getattr(value, "__module__", "") == name:
                value.cache_clear()
