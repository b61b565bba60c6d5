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
    """Providers whose adapter module some handler feeds to the shared pipeline (``webhook_ingest``)."""
    import importlib
    import inspect

    from exactly_once.adapters.base import WebhookAdapter

    wired = "\n".join(t for p in FUNCTIONS.rglob("*.py") if "webhook_ingest" in (t := p.read_text()))
    providers: set[str] = set()
    for path in (LIBRARY / "adapters").glob("*.py"):
        module_name = f"exactly_once.adapters.{path.stem}"
        if path.stem in ("__init__", "base") or module_name not in wired:
            continue
        module = importlib.import_module(module_name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, WebhookAdapter)
                and cls.__module__ == module_name
                and isinstance(getattr(cls, "provider", None), str)
            ):
                providers.add(cls.provider)
    return providers


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
