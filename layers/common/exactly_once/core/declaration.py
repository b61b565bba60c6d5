"""What a flow declares about itself, in one place: its providers, their parts, its reapers.

A flow's package (``flows/<flow>/__init__.py``, ``sends/__init__.py``) builds one ``Flow``;
``exactly_once.providers`` lists the flows, and the ingest handlers, the worker, the reaper run,
replay, trace and the operations gauges all read that list. Parts are named ``"module:attribute"``
relative to the flow's package and imported on first use, so a function pays only for what it
runs (an ingest handler never imports a processor, nor psycopg). ``tests/unit/test_providers.py``
imports every named part, so a moved module cannot hide behind its name.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Part:
    """A function or class of the flow, ``module:attr`` (``attr`` may be dotted: ``Adapter.from_env``)."""

    package: str
    path: str

    @property
    def module(self) -> str:
        return f"{self.package}.{self.path.partition(':')[0]}"

    def load(self) -> Any:
        return _load(self.module, self.path.partition(":")[2])


@functools.cache
def _load(module: str, attr: str) -> Any:
    value: Any = importlib.import_module(module)
    for name in attr.split("."):
        value = getattr(value, name)
    return value


def parts_of(package: str) -> Callable[[str], Part]:
    """``part = parts_of(__name__)`` in a flow's package, then ``part("processor:process")``."""
    return functools.partial(Part, package)


@dataclass(frozen=True)
class Provider:
    """One provider: the ``provider`` of its events, event log rows, quarantine rows and metrics."""

    name: str
    #: The HttpApi route (as in template.yaml) and the adapter factory (``Adapter.from_env``); None: no webhook.
    route: str | None = None
    adapter: Part | None = None
    #: ``(InboundEvent) -> outcome``: the worker's effect for one event.
    processor: Part | None = None
    #: ``([(message id, event)]) -> {message id: outcome}``: one commit for a batch's events (optional).
    batch_processor: Part | None = None
    #: ``(conn, event key, event log row) -> [rows]``: the flow's rows for an event, for ``trace``.
    tracer: Part | None = None
    #: ``(corrected item) -> InboundEvent``: rebuilds an event the adapter could not read (``replay --payload``).
    rebuild: Part | None = None
    #: Its open-quarantine gauge is emitted every minute, zero included (the dashboard shows it).
    gauged: bool = True


@dataclass(frozen=True)
class Reaper:
    """A scheduled sweep, ``(conn) -> rows handled``, run by the reaper run in the flows' order."""

    name: str
    run: Part
    reclaims: bool = False  # its count is claims taken back from a dead worker (StaleClaimsReclaimed)
    time_bounded: bool = False  # it takes ``remaining_ms=`` and stops early, so the later ones run


@dataclass(frozen=True)
class Flow:
    """A flow: the providers it serves and the sweeps it needs. ``name`` is its metrics dimension."""

    name: str
    providers: tuple[Provider, ...] = ()
    reapers: tuple[Reaper, ...] = ()
    #: Keys that are not events (a flow's own quarantine keys, e.g. ``send:<id>``): prefix -> tracer.
    key_tracers: dict[str, Part] = field(default_factory=dict)
