"""Secrets: a required one that is missing fails fast; an optional one reads as empty."""

from __future__ import annotations

import pytest

from exactly_once.core.errors import ConfigurationError
from exactly_once.core.secrets import get_secret


def test_missing_secret_fails_fast(monkeypatch):
    monkeypatch.delenv("APP_SECRET_ARN", raising=False)
    monkeypatch.delenv("NOT_THERE", raising=False)
    with pytest.raises(ConfigurationError):
        get_secret("NOT_THERE")
    assert get_secret("NOT_THERE", required=False) == ""
