"""Every proof's real outcome, tied to one run, written to results/ when the test ends.

A run is one pytest session (all its xdist workers share xdist's test run id). The first process of a run
to finish a proof writes ``results/run.json`` (run id, git commit, start time) and deletes every result
of an earlier run, so a proof that did not run in this one has no result: the report shows it MISSING.
Each proof then writes its own ``results/<module>__<test>.json`` after its teardown, whatever happened:
``passed``, ``failed`` (with the first line of the error) or ``skipped`` (with the reason), with the rows
it recorded (none when it failed before ``proof.record``), the crash markers its killed children left
and the processes it spawned. Workers never write the same file, so this is safe under xdist.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.proofs import meter

# EO_PROOF_RESULTS: another directory (the report's own test runs fake proofs into a temporary one)
RESULTS = Path(os.environ.get("EO_PROOF_RESULTS") or Path(__file__).resolve().parent / "results")
ROOT = Path(__file__).resolve().parents[2]
RUN_FILE = "run.json"
# xdist gives every worker of a session the same id; a session without xdist makes its own.
RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
_PROOF_KEY = pytest.StashKey["Proof"]()


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
        held: str,
        processes: int | None = None,
        crashes: int | None = None,
    ) -> None:
        """``held`` states the checked outcome in words, built from the measured values.

        ``processes`` and ``crashes`` default to what was measured while the test ran: the processes it
        spawned (plus itself) and the children that SIGKILLed themselves at a crashpoint, each leaving a
        marker. Pass them only to count something the meter cannot see.
        """
        seen = meter.current()
        self.rows.append(
            {
                "kind": kind,
                "flow": flow,
                "name": name,
                "cases": cases,
                "processes": processes if processes is not None else seen.spawned + 1,
                "crashes": crashes if crashes is not None else len(seen.kills),
                "in_flight": seen.in_flight or None,  # None: nothing measured (no storm in this proof)
                "held": held,
            }
        )


@pytest.fixture
def proof(request: pytest.FixtureRequest) -> Proof:
    recorder = Proof(request.node.nodeid)
    request.node.stash[_PROOF_KEY] = recorder
    return recorder


@pytest.fixture(autouse=True)
def _measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[meter.Meter]:
    """What the test's children did: processes spawned, crash markers left, requests in flight at once."""
    with meter.measuring(tmp_path_factory.mktemp("crash-markers")) as seen:
        yield seen


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
    if report.when == "teardown":
        write_result(item)


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (file, line, "Skipped: why")
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(longrepr)
    return " ".join(text.split())[:400]


def outcome_of(item: pytest.Item) -> tuple[str, str | None]:
    """passed / failed / skipped, and why, from the setup, call and teardown reports of one test."""
    for when in ("setup", "call", "teardown"):
        report: pytest.TestReport | None = getattr(item, f"rep_{when}", None)
        if report is None:
            continue
        if hasattr(report, "wasxfail"):
            return "skipped", f"xfail: {report.wasxfail}"
        if report.failed:
            return "failed", f"{when}: {_reason(report)}"
        if report.skipped:
            return "skipped", _reason(report)
    if getattr(item, "rep_call", None) is None:
        return "failed", "the test body never ran"
    return "passed", None


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20, check=False)
            return done.stdout.strip() if done.returncode == 0 else ""
        return ""

    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!tests/proofs/results", ":!README.md")
    return {"commit": git("rev-parse", "HEAD") or "unknown", "dirty": bool(changed)}


def start_run(results: Path, run_id: str) -> dict[str, Any]:
    """This run's run.json (written once, by whichever process gets here first); earlier runs' results go."""
    results.mkdir(exist_ok=True)
    path = results / RUN_FILE
    with contextlib.suppress(OSError, ValueError):
        current = json.loads(path.read_text())
        if current.get("run") == run_id:
            return dict(current)
    run = {"run": run_id, "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **git_commit()}
    tmp = results / f".{RUN_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(run, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    for old in results.glob("*.json"):
        if old.name == RUN_FILE:
            continue
        with contextlib.suppress(OSError, ValueError):
            if json.loads(old.read_text()).get("run") != run_id:
                old.unlink()
    return run


def result_name(nodeid: str) -> str:
    path, _, rest = nodeid.partition("::")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", rest)[:150]
    return f"{Path(path).stem}__{stem}.json"


def write_result(item: pytest.Item, results: Path = RESULTS, run_id: str = RUN_ID) -> None:
    start_run(results, run_id)
    status, reason = outcome_of(item)
    recorder: Proof | None = item.stash.get(_PROOF_KEY, None)
    seen = meter.last()
    durations = [getattr(item, f"rep_{w}", None) for w in ("setup", "call", "teardown")]
    document = {
        "run": run_id,
        "test": item.nodeid,
        "outcome": status,
        "reason": reason,
        "duration_s": round(sum(r.duration for r in durations if r is not None), 2),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": recorder.rows if recorder else [],
        "spawned": seen.spawned,
        "in_flight": seen.in_flight,
        "kills": [asdict(k) for k in seen.kills],
    }
    tmp = results / f".{result_name(item.nodeid)}.{os.getpid()}"
    tmp.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, results / result_name(item.nodeid))


__all__ = ["Proof", "outcome_of", "start_run", "write_result"]
