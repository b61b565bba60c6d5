"""User code named by configuration (``module:attr``), loaded once: the WhatsApp bot, the mail processor.

``attr`` may be an instance, a class or a factory: a class is instantiated and a factory called, without
arguments. What comes out must satisfy the runtime-checkable protocol it plugs into; anything else is a
ConfigurationError naming the setting, so a function with a bad name fails at start, not per event.
"""

from __future__ import annotations

import importlib
from typing import Any

from exactly_once.core.errors import ConfigurationError


def load_plugin(setting: str, spec: str, protocol: Any, signature: str) -> Any:
    """The object ``spec`` ("module:attr") names, checked against the runtime-checkable ``protocol``
    (a Protocol class: mypy takes no abstract class as ``type[T]``, so callers cast); ``signature`` words the error."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"{setting} must be 'module:attr', got {spec!r}")
    try:
        target: Any = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"{setting} {spec!r} cannot be loaded: {exc}") from exc
    # A class has the protocol's method too: instantiate it; a plain factory is called.
    if isinstance(target, type) or (not isinstance(target, protocol) and callable(target)):
        try:
            target = target()
        except TypeError as exc:
            raise ConfigurationError(f"{setting} {spec!r} cannot be built without arguments: {exc}") from exc
    if not isinstance(target, protocol):
        raise ConfigurationError(f"{setting} {spec!r} has no {signature} method")
    return target
