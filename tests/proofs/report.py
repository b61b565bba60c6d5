"""Render one run's proof results (tests/proofs/results/) into README.md's Guarantees table.

    python -m tests.proofs.report            # rewrite the table between the markers; exit 1 unless all held
    python -m tests.proofs.report --check    # exit 1 if README.md is not what the results say

The table describes the run named in ``results/run.json`` (written by the proofs' conftest when a pytest
session runs its first proof) and nothing else: the proofs expected are the ones pytest collects from
``tests/proofs`` now; one with no result from that run is MISSING, a skipped one SKIPPED, a failed one
FAILED. The crash table counts the boundaries whose crashpoint marker a killed child left in this run,
against the call sites found by reading the code. The exit status is 1 when anything is not a pass, so
``make test`` fails on a proof that did not run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
README = ROOT / "README.md"
START, END = "<!-- guarantees:start -->", "<!-- guarantees:end -->"
RUN_FILE = "run.json"

KINDS = {
    "crash": "SIGKILL at a boundary, then retries, SQS redelivery, leases and reapers",
    "concurrency": "identical deliveries at once, real handlers in spawned processes",
    "window": "re-deliveries spread over the dedup window (simulated clock)",
    "clock": "days of schedules on a moved clock (expiries, renewals)",
    "interleaved": "re-deliveries interleaved with live traffic and the repairs they trigger",
    "hostile": "hostile and broken input to the real handler",
    "property": "property-based (hypothesis) on parsers and keys",
    "signer": "signed by the provider's own SDK, checked by our verifier",
    "chaos": "duplicates and seeded faults at every dependency at once (tests/chaos), then recovery",
    "coverage": "the crash table against the code",
    "report": "the Guarantees table itself",
    "scan": "scanner",
}
NOT_HELD = ("FAILED", "SKIPPED", "MISSING")
# Flows a proof that recorded no rows (it failed or never ran) is counted under, by its parameter or module.
FLOWS = {
    *("generic", "github", "graph", "livekit", "mailbox", "operations", "operator API", "send", "slack"),
    *("standard", "stripe", "unipile", "whatsapp", "forward"),
}
MODULE_FLOWS = {"operator": "operator API", "jobs": "mailbox", "send": "send"}


@dataclass
class Report:
    table: str
    problems: list[str] = field(default_factory=list)


# -- inputs ---------------------------------------------------------------------------------------------------


def load_run(results: Path = RESULTS) -> dict[str, Any] | None:
    try:
        return dict(json.loads((results / RUN_FILE).read_text()))
    except (OSError, ValueError):
        return None


def load_results(results: Path, run: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """test id -> its result document, for this run's results only (an older run's file is not evidence)."""
    docs: dict[str, dict[str, Any]] = {}
    if run is None:
        return docs
    for path in sorted(results.glob("*.json")):
        if path.name == RUN_FILE:
            continue
        try:
            doc = json.loads(path.read_text())
        except ValueError:
            continue
        if doc.get("run") == run["run"]:
            docs[doc["test"]] = doc
    return docs


def collect_expected(root: Path = ROOT) -> list[str]:
    """Every proof pytest collects from tests/proofs now (parametrised cases one by one)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests/proofs"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"collecting tests/proofs failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return [line.strip() for line in done.stdout.splitlines() if "::" in line and not line.startswith(" ")]


def code_sites() -> list[dict[str, Any]]:
    """Every crashpoint boundary found by reading the code (see boundaries.py)."""
    layer = str(ROOT / "layers" / "common")
    if layer not in sys.path:
        sys.path.insert(0, layer)
    from tests.proofs.boundaries import sites

    return [{"name": s.name, "file": s.file, "function": s.function, "line": s.line} for s in sites()]


# -- rendering ------------------------------------------------------------------------------------------------


def _source_key(path: str) -> str:
    """A file path from where the library is (layers/common/exactly_once/... or a build of it) to compare."""
    for anchor in ("exactly_once/", "functions/"):
        if anchor in path:
            return anchor + path.rsplit(anchor, 1)[1]
    return path


def _boundary(name: str, file: str, function: str) -> tuple[str, str, str]:
    return (name, _source_key(file), function.replace(".<locals>", ""))


def status_of(test: str, docs: dict[str, dict[str, Any]]) -> str:
    doc = docs.get(test)
    if doc is None:
        return "MISSING"
    return {"passed": "passed", "failed": "FAILED", "skipped": "SKIPPED"}.get(doc.get("outcome", ""), "FAILED")


def _flow_of(test: str, flows: Iterable[str]) -> str:
    """The flow of a proof with no rows (it failed or never ran): from its parameter, else its module name."""
    known = set(flows) | FLOWS
    param = test.partition("[")[2].rstrip("]")
    for token in (param.split(".")[0], param.split("-")[0]):
        if token in known:
            return token
    module = test.partition("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
    for suffix, flow in [*MODULE_FLOWS.items(), *((f, f) for f in known)]:
        if module.endswith("_" + suffix):
            return flow
    return "unattributed"


def render(
    run: dict[str, Any] | None, expected: list[str], docs: dict[str, dict[str, Any]], sites: list[dict[str, Any]]
) -> Report:
    if run is None:
        return Report("No proof run found (`tests/proofs/results/run.json`): run `make test`.", ["no run"])
    statuses = {test: status_of(test, docs) for test in expected}
    rows = [(row, test, statuses[test]) for test in expected if test in docs for row in docs[test].get("rows", [])]
    order = list(KINDS)
    rows.sort(key=lambda r: (order.index(r[0]["kind"]) if r[0]["kind"] in order else 99, r[0]["flow"], r[0]["name"]))
    flows = {row["flow"] for row, _, _ in rows if row["kind"] != "coverage"}
    passed = [test for test in expected if statuses[test] == "passed"]

    # Crash coverage: the boundaries a passing proof's child was killed at, by its marker, against the code.
    in_code = {_boundary(s["name"], s["file"], s["function"]) for s in sites}
    kills = [kill for test in passed for kill in docs[test].get("kills", [])]
    killed = {_boundary(k["name"], k["file"], k["function"]) for k in kills}
    not_killed = sorted(b[0] for b in in_code - killed)
    unknown = sorted(f"{b[0]} at {b[1]}:{b[2]}" for b in killed - in_code)
    calls = {(s["file"], s["function"], s["line"]) for s in sites}
    crash_table = (
        f"Crash table: {len(calls)} crashpoint calls in the code, {len(in_code)} boundaries (the shared ingest's "
        f"per provider); {len(in_code & killed)} killed in this run, each by a child that left the marker of that "
        f"call site"
        + (f"; **not killed: {', '.join(not_killed)}**" if not_killed else "")
        + (f"; **killed at a site not in the code: {', '.join(unknown)}**" if unknown else "")
    )

    problems = [f"{test}: {status}" for test, status in statuses.items() if status != "passed"]
    problems += [f"crashpoint never killed in this run: {name}" for name in not_killed]
    problems += [f"crash marker from a site not in the code: {what}" for what in unknown]
    if not expected:
        problems.append("no proofs collected")

    count = {s: sum(1 for v in statuses.values() if v == s) for s in ("passed", *NOT_HELD)}
    commit = str(run.get("commit", "unknown"))[:12] + (" with uncommitted changes" if run.get("dirty") else "")
    cases = sum(r["cases"] for r, _, status in rows if status == "passed")
    crashes = len({(k["pid"], k["name"]) for k in kills})
    in_flight = max((int(docs[t].get("in_flight", 0)) for t in passed), default=0)
    lines = [
        f"Run `{run['run'][:12]}` of commit `{commit}`, started {run.get('started_at', '?')}: "
        f"{len(expected)} proofs collected, {count['passed']} passed, {count['FAILED']} failed, "
        f"{count['SKIPPED']} skipped, {count['MISSING']} missing (no result from this run). "
        f"In the proofs that passed: {cases} cases, {crashes} processes SIGKILLed at a crashpoint (markers seen), "
        f"up to {in_flight} requests in flight at once. {crash_table}. Regenerate with `make test` "
        "(or `make guarantees` for the proofs alone); what each proof does: [docs/proofs.md](docs/proofs.md).",
        "",
        *_summary(rows, expected, statuses, docs, flows),
        "",
    ]
    bad = [(test, statuses[test]) for test in expected if statuses[test] != "passed"]
    if bad:
        lines += ["**Not held in this run:**", ""]
        for test, status in bad:
            reason = (docs.get(test) or {}).get("reason") or "no result from this run"
            lines.append(f"- **{status}** `{test}`: {_cell(str(reason))}")
        lines.append("")
    lines += [
        "<details><summary>Every proof</summary>",
        "",
        "| flow | proof | what was tried | cases | processes | SIGKILLed | at once | what held |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for row, _, status in rows:
        held = row["held"] if status == "passed" else f"**{status}**: {row['held']}"
        lines.append(
            f"| {row['flow']} | {KINDS.get(row['kind'], row['kind'])} | {_cell(row['name'])} | {row['cases']} | "
            f"{row['processes']} | {row['crashes']} | {row.get('in_flight') or '-'} | {_cell(held)} |"
        )
    lines += ["", "</details>"]
    return Report("\n".join(lines), problems)


def _summary(
    rows: list[tuple[dict[str, Any], str, str]],
    expected: list[str],
    statuses: dict[str, str],
    docs: dict[str, dict[str, Any]],
    flows: set[str],
) -> list[str]:
    """One line per flow: what was tried against it in this run, in numbers, and whether all of it held."""
    table: dict[str, dict[str, Any]] = {}

    def of(flow: str) -> dict[str, Any]:
        return table.setdefault(
            flow,
            {"crash": set(), "storm": 0, "at_once": 0, "window": 0, "hostile": 0, "checked": 0, "not": {}},
        )

    for row, test, status in rows:
        if row["kind"] == "coverage":
            continue  # in the sentence above the table
        f = of(row["flow"])
        if status != "passed":
            continue  # counted below, by test
        kind = row["kind"]
        if kind == "crash":
            f["crash"] |= {k["name"] for k in docs[test].get("kills", [])}
        elif kind == "concurrency":
            f["storm"] += row["cases"]
            f["at_once"] = max(f["at_once"], int(row.get("in_flight") or 0))
        elif kind == "window":
            f["window"] += row["cases"]
        elif kind == "hostile":
            f["hostile"] += row["cases"]
        elif kind in ("property", "signer"):
            f["checked"] += row["cases"]
    for test in expected:
        status = statuses[test]
        if status == "passed":
            continue
        test_flows = {r["flow"] for r in docs.get(test, {}).get("rows", [])} or {_flow_of(test, flows)}
        for flow in test_flows:
            of(flow)["not"][status] = of(flow)["not"].get(status, 0) + 1
    out = [
        "| flow | boundaries SIGKILLed | identical deliveries at once | most in flight at once "
        "| re-deliveries over the window | hostile cases | property / SDK-signed cases | held |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in sorted(table):
        f = table[name]
        held = "yes" if not f["not"] else ", ".join(f"**{n} {s}**" for s, n in sorted(f["not"].items()))
        out.append(
            f"| {name} | {len(f['crash'])} | {f['storm']} | {f['at_once']} | {f['window']} | {f['hostile']} "
            f"| {f['checked']} | {held} |"
        )
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def updated_readme(table: str, readme: Path = README) -> str:
    text = readme.read_text() if readme.exists() else ""
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n## Guarantees\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table}\n{END}{tail}"


def prune(results: Path, run: dict[str, Any] | None, docs: dict[str, dict[str, Any]]) -> None:
    """Result files that are not this run's evidence (older runs, renamed proofs) are deleted."""
    for path in results.glob("*.json"):
        if path.name == RUN_FILE:
            continue
        try:
            doc = json.loads(path.read_text())
        except ValueError:
            doc = {}
        if run is None or doc.get("run") != run["run"] or doc.get("test") not in docs:
            path.unlink()


def run_report(
    results: Path, readme: Path, expected: list[str], sites: list[dict[str, Any]], check: bool = False
) -> int:
    run = load_run(results)
    docs = load_results(results, run)
    docs = {test: doc for test, doc in docs.items() if test in set(expected)}
    report = render(run, expected, docs, sites)
    new = updated_readme(report.table, readme)
    if check:
        if not readme.exists() or readme.read_text() != new:
            print(f"{readme.name}'s Guarantees table is out of date: run `python -m tests.proofs.report`")
            return 1
    else:
        readme.write_text(new)
        prune(results, run, docs)
    run_id = run["run"][:12] if run else "none"
    print(f"Guarantees table: run {run_id}, {len(expected)} proofs, {len(report.problems)} not held")
    for problem in report.problems:
        print(f"  NOT HELD: {problem}")
    return 1 if report.problems else 0


def main(argv: list[str]) -> int:
    results = Path(argv[argv.index("--results") + 1]) if "--results" in argv else RESULTS
    readme = Path(argv[argv.index("--readme") + 1]) if "--readme" in argv else README
    if "--expected" in argv:
        expected = Path(argv[argv.index("--expected") + 1]).read_text().split()
    else:
        expected = collect_expected()
    sites = json.loads(Path(argv[argv.index("--sites") + 1]).read_text()) if "--sites" in argv else code_sites()
    return run_report(results, readme, expected, sites, check="--check" in argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
