"""The EMF blobs Powertools prints to stdout, read back as metric totals (its documented test pattern)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from exactly_once.core.telemetry import NAMESPACE


def emitted(capsys: Any) -> Counter[tuple[str, str]]:
    """(provider, metric) -> total, from every EMF blob printed since the last call."""
    totals: Counter[tuple[str, str]] = Counter()
    for line in capsys.readouterr().out.splitlines():
        if '"_aws"' not in line:
            continue
        blob: dict[str, Any] = json.loads(line)
        directive = blob["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == NAMESPACE
        assert directive["Dimensions"] == [["provider", "service"]]
        for metric in directive["Metrics"]:
            values = blob[metric["Name"]]
            totals[(blob["provider"], metric["Name"])] += sum(values) if isinstance(values, list) else values
    return totals
