"""Every crashpoint in the library, found by reading the code, so a new one cannot go unproven.

Literal names (``crashpoint("graph.worker.after_fetch")``) are taken as they are; names built from the
provider (``crashpoint(f"{provider}.ingest.after_dedup")`` in the shared ingest pipeline) are expanded for
every provider whose ingest handler runs that pipeline.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "layers" / "common" / "exactly_once"
FUNCTIONS = ROOT / "functions"

_CALL = re.compile(r"""crashpoint\(\s*(f?)(["'])([^"']+)\2""")


def _sources() -> list[Path]:
    return sorted(p for p in [*LIBRARY.rglob("*.py"), *FUNCTIONS.rglob("*.py")] if p.name != "crash.py")


def ingest_providers() -> set[str]:
    """Providers whose events run through the shared ingest pipeline: every one that declares a webhook."""
    from exactly_once.providers import PROVIDERS

    return {p.name for p in PROVIDERS.values() if p.adapter is not None}


def discovered() -> dict[str, str]:
    """crashpoint name -> the file that has it (relative to the repository)."""
    found: dict[str, str] = {}
    providers = ingest_providers()
    for path in _sources():
        for is_f, _, name in _CALL.findall(path.read_text()):
            where = str(path.relative_to(ROOT))
            if is_f and "{provider}" in name:
                for provider in providers:
                    found[name.replace("{provider}", provider)] = where
            elif is_f:
                found[name + "  (unexpandable f-string)"] = where
            else:
                found[name] = where
    return found
