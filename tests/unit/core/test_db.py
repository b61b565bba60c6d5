"""core.db behind RDS Proxy: the template's DB_HOST wins over the secret's host, no server-side prepares."""

from __future__ import annotations

from typing import Any

import psycopg

from exactly_once.core import db

MANAGED_SECRET = {"username": "exactly_once_admin", "password": "p@ss/word"}  # what RDS manages: no host, no dbname


def test_db_host_and_name_complete_a_managed_secret(monkeypatch):
    # GIVEN the template's DB_HOST (the proxy) and DB_NAME, and RDS's managed master secret
    monkeypatch.setenv("DB_HOST", "proxy.example.internal")
    monkeypatch.setenv("DB_NAME", "exactly_once")
    # WHEN the URL is built
    url = db.url_from_secret(MANAGED_SECRET)
    # THEN it names the proxy and the database, TLS verified
    assert url.startswith("postgresql://exactly_once_admin:p%40ss%2Fword@proxy.example.internal:5432/exactly_once?")
    assert "sslmode=verify-full" in url


def test_db_host_overrides_the_host_an_existing_secret_names(monkeypatch):
    monkeypatch.setenv("DB_HOST", "proxy.example.internal")
    url = db.url_from_secret({**MANAGED_SECRET, "host": "db.example.internal", "dbname": "app"})
    assert "@proxy.example.internal:5432/app?" in url


def test_an_empty_db_host_keeps_the_secrets_host(monkeypatch):
    monkeypatch.setenv("DB_HOST", "")  # the template's value without a proxy
    url = db.url_from_secret({**MANAGED_SECRET, "host": "db.example.internal"})
    assert "@db.example.internal:5432/" in url


def test_connections_never_prepare_statements_server_side(monkeypatch):
    seen: dict[str, Any] = {}

    def fake_connect(url: str, **kwargs: Any) -> object:
        seen.update(kwargs)
        return object()

    monkeypatch.setattr(psycopg, "connect", fake_connect)
    db.connect("postgresql://u@127.0.0.1/x")
    assert "prepare_threshold" in seen and seen["prepare_threshold"] is None
