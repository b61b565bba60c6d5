"""Provider secrets: one Secrets Manager secret (a JSON object) per stack, cached.

On AWS, ``APP_SECRET_ARN`` names the secret and Powertools Parameters fetches it
with a cache (``SECRETS_MAX_AGE`` seconds, default 300). Locally, and in tests,
an environment variable of the same name as the key overrides it, so
``env.local.json`` (the ``sam local invoke --env-vars`` format) can carry them.
Values are never logged.
"""

from __future__ import annotations

import os
from typing import Any

from exactly_once.core.errors import ConfigurationError
from exactly_once.core.settings import env_int


def _secret_document() -> dict[str, Any]:
    arn = os.environ.get("APP_SECRET_ARN")
    if not arn:
        return {}
    # Imported here: handlers that run with environment overrides never pay for it.
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_secret(arn, transform="json", max_age=env_int("SECRETS_MAX_AGE", 300))
    if not isinstance(value, dict):
        raise ConfigurationError("APP_SECRET_ARN must hold a JSON object")
    return value


def secret_document() -> dict[str, Any]:
    """The stack's whole secret document (cached): for hiding its values, never for showing them."""
    return _secret_document()


def get_secret(name: str, *, required: bool = True) -> str:
    """The secret ``name``: the environment first, then the stack's secret document."""
    value = os.environ.get(name)
    if value:
        return value
    value = _secret_document().get(name)
    if value:
        return str(value)
    if required:
        raise ConfigurationError(f"secret {name} is not configured (environment or APP_SECRET_ARN)")
    return ""
