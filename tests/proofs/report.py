"""Render the proofs' results (tests/proofs/results/*.json) into README.md's Guarantees table.

    python -m tests.proofs.report            # rewrite the table between the markers
    python -m tests.proofs.report --check    # exit 1 if README.md is not what the results say

``make test`` runs the suite (each proof rewrites its own JSON file) and then this script. A result whose test
no longer exists is ignored, so renaming a proof cannot leave a stale row behind.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
README = ROOT / "README.md"
START, END = "<!-- guarantees:start -->", "<!-- guarantees:end -->"

KINDS = {
    "crash": "SIGKILL at a boundary, then retries, SQS redelivery, leases and reapers",
    "concurrency": "identical deliveries at once, real handlers in spawned processes",
    "window": "re-deliveries spread over the dedup window (simulated clock)",
    "hostile": "hostile and broken input to the real handler",
    "property": "property-based (hypothesis) on parsers and keys",
    "signer": "signed by the provider's own SDK, checked by our verifier",
    "coverage": "the crash table against the code",
    "scan": "scanner",
}


def _alive(test: str) -> bool:
    path, _, rest = test.partition("::")
    func = rest.split("[", 1)[0].split("::")[-1]
    file = ROOT / path
    return file.exists() and re.search(rf"^\s*def {re.escape(func)}\(", file.read_text(), re.MULTILINE) is not None


def load() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(RESULTS.glob("*.json")):
        doc = json.loads(path.read_text())
        if _alive(doc["test"]):
            docs.append(doc)
    return docs


def render(docs: list[dict[str, Any]]) -> str:
    rows = [(row, doc["passed"]) for doc in docs for row in doc["rows"]]
    order = list(KINDS)
    rows.sort(key=lambda r: (order.index(r[0]["kind"]) if r[0]["kind"] in order else 99, r[0]["flow"], r[0]["name"]))
    crashes = sum(r["crashes"] for r, _ in rows)
    cases = sum(r["cases"] for r, _ in rows)
    failed = sum(1 for _, ok in rows if not ok)
    latest = max((d["finished_at"] for d in docs), default="never")
    lines = [
        f"Written by the test suite (`tests/proofs/`, last run {latest}): {len(rows)} proofs, {cases} cases, "
        f"{crashes} processes killed with SIGKILL, {failed} failed. Regenerate with `make test` "
        "(or `make guarantees` for the proofs alone); what each proof does: [docs/proofs.md](docs/proofs.md). "
        + " ".join(f"Crash table: {r['held']}." for r, _ in rows if r["kind"] == "coverage"),
        "",
        *_summary(rows),
        "",
        "<details><summary>Every proof</summary>",
        "",
        "| flow | proof | what was tried | cases | processes | crashes | what held |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for row, ok in rows:
        held = row["held"] if ok else f"**FAILED**: {row['held']}"
        lines.append(
            f"| {row['flow']} | {KINDS.get(row['kind'], row['kind'])} | {_cell(row['name'])} | {row['cases']} | "
            f"{row['processes']} | {row['crashes']} | {_cell(held)} |"
        )
    lines += ["", "</details>"]
    return "\n".join(lines)


def _summary(rows: list[tuple[dict[str, Any], bool]]) -> list[str]:
    """One line per flow: what was tried against it, in numbers, and whether all of it held."""
    flows: dict[str, dict[str, int]] = {}
    for row, ok in rows:
        if row["kind"] == "coverage":
            continue  # in the sentence above the table
        f = flows.setdefault(
            row["flow"], dict.fromkeys(("crash", "storm", "window", "hostile", "checked", "failed"), 0)
        )
        kind = row["kind"]
        if kind == "crash":
            f["crash"] += 1
        elif kind == "concurrency":
            f["storm"] += row["cases"]
        elif kind == "window":
            f["window"] += row["cases"]
        elif kind == "hostile":
            f["hostile"] += row["cases"]
        elif kind in ("property", "signer"):
            f["checked"] += row["cases"]
        f["failed"] += 0 if ok else 1
    out = [
        "| flow | boundaries SIGKILLed | identical deliveries at once | re-deliveries over the window "
        "| hostile cases | property / SDK-signed cases | held |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name in sorted(flows):
        f = flows[name]
        held = "yes" if not f["failed"] else f"**{f['failed']} FAILED**"
        out.append(
            f"| {name} | {f['crash']} | {f['storm']} | {f['window']} | {f['hostile']} | {f['checked']} | {held} |"
        )
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def updated_readme(table: str) -> str:
    text = README.read_text()
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n## Guarantees\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv: list[str]) -> int:
    new = updated_readme(render(load()))
    if "--check" in argv:
        if README.read_text() != new:
            print("README.md's Guarantees table is out of date: run `python -m tests.proofs.report`")
            return 1
        return 0
    README.write_text(new)
    print(f"README.md Guarantees table: {len(load())} result files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
