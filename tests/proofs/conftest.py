"""The ``proof`` fixture: what a proof tried and what held, written to results/ when the test ends."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Proof:
    """One row of the Guarantees table per ``record`` call."""

    test: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def record(
        self,
        *,
        kind: str,
        flow: str,
        name: str,
        cases: int,
        processes: int = 1,
        crashes: int = 0,
        held: str,
    ) -> None:
        """``held`` states the checked outcome in words, built from the measured values."""
        self.rows.append(
            {
                "kind": kind,
                "flow": flow,
                "name": name,
                "cases": cases,
                "processes": processes,
                "crashes": crashes,
                "held": held,
            }
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def proof(request: pytest.FixtureRequest) -> Iterator[Proof]:
    recorder = Proof(request.node.nodeid)
    yield recorder
    report = getattr(request.node, "rep_call", None)
    if not recorder.rows or report is None:
        return
    RESULTS.mkdir(exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.split("::", 1)[-1])[:150]
    module = Path(str(request.node.fspath)).stem
    document = {
        "test": request.node.nodeid,
        "passed": bool(report.passed),
        "duration_s": round(report.duration, 2),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": recorder.rows,
    }
    (RESULTS / f"{module}__{stem}.json").write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


__all__ = ["Proof", "asdict"]
