"""The Guarantees table cannot say "yes" for a proof that did not pass in the run it names.

A real pytest session runs fake proofs (one holds, one fails before recording, one fails after, one skips)
through the proofs' own conftest into a temporary results directory; the report then renders that run
with one more expected proof that never ran. Failed, skipped and missing proofs must show as such, a
result from an earlier run must not count, an unkilled crashpoint must show, and the exit status must be 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.proofs import report

ROOT = Path(__file__).resolve().parents[2]

FAKE_PROOFS = """
import pytest

def test_holds(proof):
    proof.record(kind="hostile", flow="alpha", name="held", cases=3, held="3 cases held")

def test_breaks_before_recording(proof):
    assert 1 == 2, "the effect happened twice"

def test_breaks_after_recording(proof):
    proof.record(kind="hostile", flow="beta", name="recorded, then broke", cases=2, held="2 cases held")
    assert False, "the end state was wrong"

def test_skips(proof):
    pytest.skip("dovecot is not installed")

def test_fixture_breaks(broken, proof):
    pass

@pytest.fixture
def broken():
    raise RuntimeError("the stack did not start")
"""

SITE = {"name": "alpha.worker.after_commit", "file": "layers/common/exactly_once/alpha.py", "function": "f", "line": 1}


def _run_fake_session(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text('pytest_plugins = ["tests.proofs.conftest"]\n')
    (project / "test_fake_alpha.py").write_text(textwrap.dedent(FAKE_PROOFS))
    results = tmp_path / "results"
    env = {**os.environ, "EO_PROOF_RESULTS": str(results), "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_XDIST_TESTRUNUID", None)  # a session of its own, not this one's run
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stdout[-2000:]  # the fake session itself fails: it has failures
    return results


def _report(tmp_path: Path, results: Path, expected: list[str], sites: list[dict[str, object]]) -> tuple[int, str]:
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n\n## Guarantees\n\n<!-- guarantees:start -->\nold table saying yes\n<!-- guarantees:end -->\n"
    )
    (tmp_path / "expected.txt").write_text("\n".join(expected))
    (tmp_path / "sites.json").write_text(json.dumps(sites))
    args = ["--results", str(results), "--readme", str(readme), "--expected", str(tmp_path / "expected.txt")]
    done = subprocess.run(
        [sys.executable, "-m", "tests.proofs.report", *args, "--sites", str(tmp_path / "sites.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, readme.read_text()


def test_failed_skipped_and_missing_proofs_render_so_and_fail_the_report(tmp_path, proof):
    results = _run_fake_session(tmp_path)
    run = json.loads((results / "run.json").read_text())
    docs = {d["test"]: d for d in (json.loads(p.read_text()) for p in results.glob("test_*.json"))}
    # every collected fake proof wrote its real outcome, rows or not, stamped with the session's run id
    outcomes = {test.split("::")[1]: (d["outcome"], d["run"]) for test, d in docs.items()}
    assert outcomes == {
        "test_holds": ("passed", run["run"]),
        "test_breaks_before_recording": ("failed", run["run"]),
        "test_breaks_after_recording": ("failed", run["run"]),
        "test_skips": ("skipped", run["run"]),
        "test_fixture_breaks": ("failed", run["run"]),
    }
    assert run["commit"] != "" and "started_at" in run
    expected = [*docs, "test_fake_alpha.py::test_never_ran"]
    status, readme = _report(tmp_path, results, expected, [SITE])
    table = readme.split("<!-- guarantees:start -->")[1].split("<!-- guarantees:end -->")[0]
    assert status == 1
    assert "old table saying yes" not in readme
    assert f"Run `{run['run'][:12]}` of commit `{run['commit'][:12]}" in table
    assert "5 passed" not in table and "6 proofs collected, 1 passed, 3 failed, 1 skipped, 1 missing" in table
    assert "**FAILED** `test_fake_alpha.py::test_breaks_before_recording`: call: AssertionError" in table
    assert "the effect happened twice" in table
    assert "**FAILED** `test_fake_alpha.py::test_fixture_breaks`: setup: RuntimeError" in table
    assert "**SKIPPED** `test_fake_alpha.py::test_skips`: dovecot is not installed" in table
    assert "**MISSING** `test_fake_alpha.py::test_never_ran`: no result from this run" in table
    # the row a failing proof recorded before it broke is marked, and its flow is not "yes"
    assert "**FAILED**: 2 cases held" in table
    summary_table = table.split("<details>")[0].splitlines()
    summary = {line.split(" | ")[0].strip("| "): line for line in summary_table if line.startswith("| ")}
    assert summary["beta"].endswith("| **1 FAILED** |")
    assert "**1 MISSING**" in summary["alpha"] and "**1 SKIPPED**" in summary["alpha"]
    assert "**2 FAILED**" in summary["alpha"]  # the rowless failures are the alpha module's
    assert "| yes |" not in table
    # the crashpoint no child was killed at in this run is named
    assert "not killed: alpha.worker.after_commit" in table

    # a result from an earlier run is not evidence: the same passing proof becomes MISSING
    (results / "run.json").write_text(json.dumps({**run, "run": "a-later-run-that-ran-nothing"}))
    status, readme = _report(tmp_path, results, ["test_fake_alpha.py::test_holds"], [])
    assert status == 1 and "**MISSING** `test_fake_alpha.py::test_holds`" in readme
    assert not list(results.glob("test_*.json"))  # and the stale files are cleared

    proof.record(
        kind="report",
        flow="all",
        name="a fake run: 1 passing, 3 failing, 1 skipped, 1 missing proof, 1 unkilled crashpoint, 1 stale result",
        cases=len(expected) + 1,
        held="each rendered FAILED / SKIPPED / MISSING, none 'yes'; report exit status 1",
    )


def test_a_run_where_everything_held_says_yes_and_passes(tmp_path, proof):
    results = tmp_path / "results"
    results.mkdir()
    run = {"run": "r1" * 8, "commit": "c" * 40, "dirty": False, "started_at": "2026-01-01T00:00:00Z"}
    (results / "run.json").write_text(json.dumps(run))
    kill = {**SITE, "pid": 42}
    doc = {
        "run": run["run"],
        "test": "t.py::test_kill",
        "outcome": "passed",
        "reason": None,
        "kills": [kill],
        "in_flight": 7,
        "rows": [
            {"kind": "crash", "flow": "alpha", "name": SITE["name"], "cases": 2, "processes": 2, "crashes": 1}
            | {"in_flight": 0, "held": "held"},
            {"kind": "concurrency", "flow": "alpha", "name": "storm", "cases": 100, "processes": 5, "crashes": 0}
            | {"in_flight": 7, "held": "held"},
        ],
    }
    (results / "t__test_kill.json").write_text(json.dumps(doc))
    status, readme = _report(tmp_path, results, ["t.py::test_kill"], [SITE])
    assert status == 0, readme
    assert "1 proofs collected, 1 passed, 0 failed, 0 skipped, 0 missing" in readme
    assert "1 killed in this run" in readme and "not killed" not in readme
    assert "| alpha | 1 | 100 | 7 | 0 | 0 | 0 | yes |" in readme
    assert report.status_of("t.py::test_other", {}) == "MISSING"
    proof.record(kind="report", flow="all", name="a fake run where everything held", cases=1, held="'yes', exit 0")
