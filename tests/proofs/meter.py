"""What a proof's children did, measured rather than typed in: processes spawned, crash markers, overlap.

``crashpoint()`` (``exactly_once/core/crash.py``) writes ``<EO_CRASH_MARKERS>/<pid>.json`` (its name and
the file, function and line of its call site) just before the process SIGKILLs itself; ``run_child`` reads
the marker of the child it waited for. The storm helpers report the most requests they saw in flight at
once. The proofs' conftest opens one ``measuring`` per test and writes what it saw into the result file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

MARKERS_ENV = "EO_CRASH_MARKERS"


@dataclass(frozen=True)
class Kill:
    """One process that SIGKILLed itself at a crashpoint, and where: the marker it wrote first."""

    name: str
    file: str
    function: str
    line: int
    pid: int

    @property
    def site(self) -> str:
        return f"{self.file}:{self.function}"


@dataclass
class Meter:
    markers: Path | None = None
    spawned: int = 0
    in_flight: int = 0
    kills: list[Kill] = field(default_factory=list)

    def spawn(self, processes: int = 1) -> None:
        self.spawned += processes

    def overlap(self, at_once: int) -> None:
        self.in_flight = max(self.in_flight, at_once)

    def marker_env(self) -> dict[str, str]:
        return {MARKERS_ENV: str(self.markers)} if self.markers else {}

    def kill_of(self, pid: int | None) -> Kill | None:
        """The marker the process ``pid`` wrote before it killed itself (counted once), or None."""
        if pid is None or self.markers is None:
            return None
        path = self.markers / f"{pid}.json"
        if not path.exists():
            return None
        doc = json.loads(path.read_text())
        kill = Kill(doc["name"], doc["file"], doc["function"], int(doc["line"]), int(doc["pid"]))
        if kill not in self.kills:
            self.kills.append(kill)
        return kill


@dataclass
class _Now:
    running: Meter | None = None
    finished: Meter = field(default_factory=Meter)


_NOW = _Now()


@contextmanager
def measuring(markers: Path) -> Iterator[Meter]:
    _NOW.running = Meter(markers=markers)
    try:
        yield _NOW.running
    finally:
        _NOW.finished, _NOW.running = _NOW.running, None


def current() -> Meter:
    """The running test's meter (a throwaway one outside a proof, e.g. a functional test's helper)."""
    return _NOW.running if _NOW.running is not None else Meter()


def last() -> Meter:
    """The meter of the test that finished last in this process (read when its result is written)."""
    return _NOW.running if _NOW.running is not None else _NOW.finished


def max_overlap(intervals: list[tuple[int, int]]) -> int:
    """The most intervals (start, end), on one clock, open at the same instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    best = now = 0
    for _, step in edges:  # an end sorts before a start at the same instant: touching is not overlapping
        now += step
        best = max(best, now)
    return best
