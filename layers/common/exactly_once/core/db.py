"""Postgres connection, reused across warm invocations; SQL comes from ``queries``.

``DATABASE_URL`` wins (local stack, tests); on AWS ``DB_SECRET_ARN`` names an RDS
secret (host, port, username, password, dbname) read through Powertools
Parameters with a cache. The connection runs in autocommit mode: every unit of
work opens its own ``conn.transaction()``.

A connection that cannot be opened raises ``DatabaseUnavailableError`` (carrying psycopg's error), never an
HTTP answer: an API handler maps it to its 503, a queue worker lets the message be retried.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import psycopg

from exactly_once.core.errors import ConfigurationError, DatabaseUnavailableError
from exactly_once.core.settings import env_int

_conn: psycopg.Connection[Any] | None = None


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    arn = os.environ.get("DB_SECRET_ARN")
    if not arn:
        raise ConfigurationError("set DATABASE_URL, or DB_SECRET_ARN to an RDS secret")
    from aws_lambda_powertools.utilities import parameters

    secret = parameters.get_secret(arn, transform="json", max_age=env_int("SECRETS_MAX_AGE", 300))
    if not isinstance(secret, dict):
        raise ConfigurationError("DB_SECRET_ARN must hold the RDS JSON secret")
    user, password = quote(str(secret["username"])), quote(str(secret["password"]))
    host, port = secret.get("host") or os.environ.get("DB_HOST"), secret.get("port", 5432)
    dbname = secret.get("dbname") or os.environ.get("DB_NAME", "postgres")
    return f"postgresql://{user}:{password}@{host}:{port}/{dbname}?sslmode=prefer"


def connect(url: str | None = None) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(
            url or database_url(),
            autocommit=True,
            connect_timeout=env_int("DB_CONNECT_TIMEOUT", 5),
            application_name=os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "exactly-once"),
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError("database unavailable", exc) from exc


def connection() -> psycopg.Connection[Any]:
    """The container's connection: opened once, reopened when broken."""
    global _conn  # noqa: PLW0603 - one connection per warm container is the point
    if _conn is None or _conn.closed or _conn.broken:
        _conn = connect()
    return _conn


def reset() -> None:
    """Drop the cached connection (tests, and after a fatal connection error)."""
    global _conn  # noqa: PLW0603
    if _conn is not None and not _conn.closed:
        _conn.close()
    _conn = None
