"""Postgres connection, reused across warm invocations; SQL comes from ``queries``.

``DATABASE_URL`` wins (local stack, tests); on AWS ``DB_SECRET_ARN`` names an RDS
secret (host, port, username, password, dbname) read through Powertools
Parameters with a cache; ``DB_HOST`` (set by the template: the RDS Proxy, or the cluster it created)
overrides the secret's host and ``DB_NAME`` supplies a dbname the secret lacks. The connection runs
in autocommit mode: every unit of work opens its own ``conn.transaction()``.

TLS: a URL built from the RDS secret says ``sslmode=verify-full`` with ``sslrootcert`` the RDS CA
bundle shipped in the layer (``core/certs/rds-ca-bundle.pem``, refreshed by ``make rds-ca``): the
server's certificate must chain to Amazon's RDS (or RDS Proxy) roots and name the host, and a server
that does not offer TLS is refused, never used in plaintext. Set ``rds.force_ssl=1`` on the database
too (docs/deploy.md). ``DATABASE_URL`` is taken as given (the local stack and tests).

Timeouts: every connection starts with ``statement_timeout``, ``lock_timeout`` and
``idle_in_transaction_session_timeout`` (libpq ``options``), so a hung query or a stuck transaction
cannot hold its locks until the Lambda dies. A function sets its own through ``DB_STATEMENT_TIMEOUT_MS``,
``DB_LOCK_TIMEOUT_MS`` and ``DB_IDLE_IN_TRANSACTION_TIMEOUT_MS`` (0 turns one off, as Postgres reads it).

A connection that cannot be opened raises ``DatabaseUnavailableError`` (carrying psycopg's error), never an
HTTP answer: an API handler maps it to its 503, a queue worker lets the message be retried.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg

from exactly_once.core.errors import ConfigurationError, DatabaseUnavailableError
from exactly_once.core.settings import env_int

_conn: psycopg.Connection[Any] | None = None

#: Amazon's RDS root CAs (every region) and the Amazon Trust Services roots of RDS Proxy (``make rds-ca``).
RDS_CA_BUNDLE = Path(__file__).resolve().parent / "certs" / "rds-ca-bundle.pem"

#: (setting, environment variable, default in ms): less than any function's timeout, so Postgres ends the
#: statement, the lock wait or the abandoned transaction before Lambda ends the process.
SESSION_TIMEOUTS = (
    ("statement_timeout", "DB_STATEMENT_TIMEOUT_MS", 20_000),
    ("lock_timeout", "DB_LOCK_TIMEOUT_MS", 5_000),
    ("idle_in_transaction_session_timeout", "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 30_000),
)


def session_options() -> str:
    """libpq ``options``: the session's timeouts, from the environment (read per connection)."""
    return " ".join(f"-c {name}={env_int(var, default)}" for name, var, default in SESSION_TIMEOUTS)


def url_from_secret(secret: Mapping[str, Any]) -> str:
    """The URL of an RDS secret (username, password, host, port, dbname): TLS verified against the RDS CAs."""
    user, password = quote(str(secret["username"]), safe=""), quote(str(secret["password"]), safe="")
    # DB_HOST wins: the template sets it to the RDS Proxy's endpoint (the secret names the database's own
    # host) and to the created cluster's (an RDS-managed master secret holds only username and password).
    host, port = os.environ.get("DB_HOST") or secret.get("host"), secret.get("port", 5432)
    dbname = quote(str(secret.get("dbname") or os.environ.get("DB_NAME", "postgres")), safe="")
    if not host:
        raise ConfigurationError("the RDS secret names no host (and DB_HOST is not set)")
    tls = urlencode({"sslmode": "verify-full", "sslrootcert": str(RDS_CA_BUNDLE)})
    return f"postgresql://{user}:{password}@{host}:{port}/{dbname}?{tls}"


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
    return url_from_secret(secret)


def connect(url: str | None = None) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(
            url or database_url(),
            autocommit=True,
            connect_timeout=env_int("DB_CONNECT_TIMEOUT", 5),
            application_name=os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "exactly-once"),
            options=session_options(),
            # No server-side prepared statements: behind RDS Proxy a named prepare (and psycopg's
            # DEALLOCATE ALL after a rollback, psycopg#1105) can pin the session to one database
            # connection; unnamed extended-protocol statements are multiplexed (docs/capacity.md).
            prepare_threshold=None,
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
