"""Every crashpoint in the library has a crash proof: adding one without a scenario fails here.

This is the static half: a scenario exists for every boundary found in the code, and every boundary name
belongs to one call site. Whether each site was actually killed in this run is counted by the report, from
the markers the killed children left (``python -m tests.proofs.report``).
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from pathlib import Path

from tests.proofs.boundaries import sites


def covered() -> dict[str, str]:
    """boundary -> the proof module whose SCENARIOS table kills a process there."""
    table: dict[str, str] = {}
    for path in sorted(Path(__file__).parent.glob("test_crash_*.py")):
        if path.stem == Path(__file__).stem:
            continue
        module = importlib.import_module(f"tests.proofs.{path.stem}")
        for boundary in getattr(module, "SCENARIOS", {}):
            table[boundary] = path.stem
    return table


def test_every_crashpoint_in_the_code_has_a_crash_scenario(proof):
    found = sites()
    where: dict[str, set[str]] = defaultdict(set)
    for site in found:
        where[site.name].add(f"{site.site}:{site.line}")
    shared = {name: sorted(places) for name, places in where.items() if len(places) > 1}
    assert not shared, f"a crashpoint name must belong to one call site, so its marker says where: {shared}"
    table = covered()
    missing = {s.name: s.site for s in found if s.name not in table}
    assert not missing, f"crashpoints without a crash scenario in tests/proofs/test_crash_*.py: {missing}"
    stale = sorted(set(table) - set(where))
    assert not stale, f"crash scenarios for crashpoints that no longer exist in the code: {stale}"
    calls = {(s.file, s.function, s.line) for s in found}
    proof.record(
        kind="coverage",
        flow="all",
        name="crashpoints in the code vs. crash scenarios",
        cases=len(found),
        held=f"{len(calls)} crashpoint calls, {len(found)} boundaries (each name at one site), "
        f"{len(found)} with a scenario",
    )
