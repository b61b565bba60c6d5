"""Every crashpoint in the library has a crash proof: adding one without a scenario fails here."""

from __future__ import annotations

import importlib
from pathlib import Path

from tests.proofs.boundaries import discovered


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
    found = discovered()
    table = covered()
    missing = {name: where for name, where in found.items() if name not in table}
    assert not missing, f"crashpoints without a crash scenario in tests/proofs/test_crash_*.py: {missing}"
    stale = sorted(set(table) - set(found))
    assert not stale, f"crash scenarios for crashpoints that no longer exist in the code: {stale}"
    proof.record(
        kind="coverage",
        flow="all",
        name="crashpoints in the code vs. crash scenarios",
        cases=len(found),
        held=f"{len(found)} crashpoints found by reading the code, {len(found)} covered",
    )
