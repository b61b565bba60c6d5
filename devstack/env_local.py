"""``env.local.json``: local environment and development secrets, in the ``sam local invoke --env-vars`` format.

``{"Parameters": {VAR: value}, "<FunctionLogicalId>": {VAR: value}}``: ``Parameters``
applies to every function, a function's own object wins. ``make run`` creates the
file when it is missing and adds the keys that are missing; a value the user edited
(a real Graph client secret, a tunnel URL) is never overwritten.
The generated secrets are random per machine, so the file is git-ignored; the
committed ``env.local.example.json`` shows its shape.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from pathlib import Path
from typing import Any

from devstack.template import ROOT

ENV_FILE = ROOT / "env.local.json"
_SECRET_CALL = re.compile(r"""get_secret\(\s*["']([A-Z][A-Z0-9_]+)["']""")
# Settings that look like secrets by name but are configuration: keep the example value.
_NOT_SECRET = re.compile(r"(_MODEL|_BASE_URL|_TENANT_ID|_REGION)$")
# Credentials the stack presents TO the fake provider APIs, which accept only their test values
# (devstack/fake_whatsapp.py, fake_unipile.py). Put a real token here to talk to the real API.
FAKE_API_CREDENTIALS = frozenset({"WHATSAPP_ACCESS_TOKEN", "UNIPILE_API_KEY"})


def secret_names() -> dict[str, str]:
    """Every secret the code asks for, with an example value showing its shape."""
    examples: dict[str, str] = {}
    try:
        from tests.harness import TEST_SECRETS  # the catalogue of shapes, when the repo's tests are present

        examples.update(TEST_SECRETS)
    except ImportError:
        pass
    for folder in (ROOT / "layers", ROOT / "functions"):
        for path in folder.rglob("*.py"):
            for name in _SECRET_CALL.findall(path.read_text(encoding="utf-8", errors="replace")):
                examples.setdefault(name, "")
    return examples


def dev_value(name: str, example: str) -> str:
    """A random development value shaped like ``example`` (JSON maps, ``whsec_`` keys, prefixes)."""
    if _NOT_SECRET.search(name) or name in FAKE_API_CREDENTIALS:
        return example
    try:
        parsed = json.loads(example)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return json.dumps({k: dev_value(name, str(v)) for k, v in parsed.items()})
    if example.startswith("whsec_"):
        return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    for prefix in ("sk-", "API"):
        if example.startswith(prefix):
            return prefix + "local" + secrets.token_hex(12)
    return "local-" + secrets.token_urlsafe(24)


def load(path: Path = ENV_FILE) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    data: dict[str, dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
    return data


def merge(path: Path, wanted: dict[str, dict[str, str]], record: Path) -> dict[str, dict[str, str]]:
    """Write ``wanted`` into the file without overwriting the user's edits.

    A missing key is added. A present key is updated only if it still holds the value
    this stack generated last time (``record``): a derived value (a port, a queue URL)
    follows the stack, a value the user typed stays.
    """
    current = load(path)
    generated = load(record)
    changed = not path.exists()
    for section, values in wanted.items():
        target = current.setdefault(section, {})
        previous = generated.get(section, {})
        for key, value in values.items():
            untouched = key in target and key in previous and target[key] == previous[key]
            if key not in target or (untouched and target[key] != value):
                target[key] = value
                changed = True
    if changed:
        path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        path.chmod(0o600)  # development secrets, still secrets
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return current


def function_env(data: dict[str, dict[str, str]], function: str) -> dict[str, str]:
    """What ``sam local invoke --env-vars`` gives ``function``: Parameters, then its own section."""
    return {**data.get("Parameters", {}), **data.get(function, {})}


def secrets_of(data: dict[str, Any]) -> dict[str, str]:
    names = secret_names()
    return {k: v for k, v in data.get("Parameters", {}).items() if k in names}
