"""Provider secrets: Secrets Manager secrets (JSON objects), one per purpose, cached.

On AWS each purpose (the operator token, Graph, LiveKit, the LLM, WhatsApp, Unipile, the generic
webhooks, IMAP passwords) can have a secret of its own, named by ``SECRET_ARN_<PURPOSE>`` (IMAP:
``IMAP_SECRET_ARN``), so a function is given read access to only what it uses (issue 16). A purpose
without one reads the stack's shared document, ``APP_SECRET_ARN``; a purpose with one never does.
Powertools Parameters fetches them with a cache (``SECRETS_MAX_AGE`` seconds, default 300). Locally, and in tests,
an environment variable of the same name as the key overrides it, so
``env.local.json`` (the ``sam local invoke --env-vars`` format) can carry them.
Values are never logged.
"""

from __future__ import annotations

import os
import re
from typing import Any

from exactly_once.core.errors import ConfigurationError
from exactly_once.core.settings import env_int

#: Mailbox passwords: the name comes from a database row (mailbox_configs.password_secret), so only
#: this prefix may be named: never AWS_SESSION_TOKEN, a provider's secret or the operator token.
IMAP_PASSWORD_NAME = re.compile(r"^IMAP_PASSWORD_[A-Z0-9_]{1,64}$")


def _document(arn: str, variable: str) -> dict[str, Any]:
    # Imported here: handlers that run with environment overrides never pay for it.
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_secret(arn, transform="json", max_age=env_int("SECRETS_MAX_AGE", 300))
    if not isinstance(value, dict):
        raise ConfigurationError(f"{variable} must hold a JSON object")
    return value


#: Name prefix -> purpose: the secret a name is read from when ``SECRET_ARN_<PURPOSE>`` is set.
PURPOSES: tuple[tuple[str, str], ...] = (
    ("API_TOKEN", "OPERATOR"),
    ("GRAPH_", "GRAPH"),
    ("LIVEKIT_", "LIVEKIT"),
    ("LLM_", "LLM"),
    ("WHATSAPP_", "WHATSAPP"),
    ("UNIPILE_", "UNIPILE"),
    ("STANDARD_WEBHOOK", "WEBHOOKS"),
    ("STRIPE_", "WEBHOOKS"),
    ("GITHUB_", "WEBHOOKS"),
    ("SLACK_", "WEBHOOKS"),
    ("FORWARD_", "FORWARD"),  # FORWARD_SIGNING_SECRET: signs forwarded events (sends/forward.py)
)


def purpose_of(name: str) -> str | None:
    """The purpose whose secret holds ``name`` (None: the shared document only)."""
    return next((purpose for prefix, purpose in PURPOSES if name.startswith(prefix)), None)


def _secret_document(name: str | None = None) -> dict[str, Any]:
    purpose = purpose_of(name) if name else None
    variable = f"SECRET_ARN_{purpose}" if purpose else ""
    if variable and os.environ.get(variable):
        return _document(os.environ[variable], variable)
    arn = os.environ.get("APP_SECRET_ARN")
    return _document(arn, "APP_SECRET_ARN") if arn else {}


def imap_password(name: str) -> str:
    """The IMAP password stored under ``name`` (``IMAP_PASSWORD_<A-Z0-9_>``, as mailbox_configs names it).

    With ``IMAP_SECRET_ARN`` set (on AWS: the template sets it) the password comes from that secret only,
    never from the process environment; without it (local stack, tests) from the environment.
    """
    if not IMAP_PASSWORD_NAME.match(name):
        raise ConfigurationError(f"password_secret must match {IMAP_PASSWORD_NAME.pattern}, got {name[:80]!r}")
    arn = os.environ.get("IMAP_SECRET_ARN")
    value = _document(arn, "IMAP_SECRET_ARN").get(name) if arn else os.environ.get(name)
    if not value:
        where = "the IMAP_SECRET_ARN secret" if arn else "the environment (no IMAP_SECRET_ARN)"
        raise ConfigurationError(f"IMAP password {name} is not configured in {where}")
    return str(value)


def secret_document() -> dict[str, Any]:
    """Every secret document this function may read, merged (cached): for hiding values, never showing them."""
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    merged = dict(_secret_document())
    for purpose in sorted({purpose for _, purpose in PURPOSES}):
        arn = os.environ.get(f"SECRET_ARN_{purpose}")
        if not arn:
            continue
        try:
            merged.update(_document(arn, f"SECRET_ARN_{purpose}"))
        except (GetParameterError, ConfigurationError):
            continue  # not granted to this function: it cannot show what it cannot read either
    return merged


def get_secret(name: str, *, required: bool = True) -> str:
    """The secret ``name``: the environment first, then the stack's secret document."""
    value = os.environ.get(name)
    if value:
        return value
    value = _secret_document(name).get(name)
    if value:
        return str(value)
    if required:
        purpose = purpose_of(name)
        where = f"SECRET_ARN_{purpose}" if purpose and os.environ.get(f"SECRET_ARN_{purpose}") else "APP_SECRET_ARN"
        raise ConfigurationError(f"secret {name} is not configured (environment or {where})")
    return ""
