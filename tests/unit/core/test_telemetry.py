"""The README's metric catalogue names exactly the metrics the code can emit (telemetry.Metric)."""

from __future__ import annotations

import re
from pathlib import Path

from exactly_once.core.telemetry import Metric

README = Path(__file__).resolve().parents[3] / "README.md"


def documented() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Metric catalogue") :]
    section = section[: section.index("\n## ")]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Za-z]+)`", row.split("|")[1])}


def test_every_metric_in_the_code_has_a_row_and_every_row_a_metric():
    in_code = {value for name, value in vars(Metric).items() if name.isupper()}
    assert documented() == in_code
