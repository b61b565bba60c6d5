"""The local stack's CloudWatch log pipeline: EMF lines the functions print become metrics in moto.

On Lambda, a function's stdout goes to CloudWatch Logs, which turns every Embedded Metric Format
line (``telemetry.counters``: ``{"_aws": {"CloudWatchMetrics": [...]}, ...}``) into metrics. Locally
the functions run in this process, so ``install`` puts a filter on ``sys.stdout``: an EMF line is taken
off (a storm's blobs would drown the terminal) and its values ``PutMetricData`` into the embedded
moto, summed per metric and minute every second; any other line passes through. The console's
``GET metrics`` then reads them with the same ``GetMetricData`` call it makes on AWS.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

log = logging.getLogger("devstack.emf")

MAX_DATUMS = 1000  # PutMetricData's limit per request
Key = tuple[str, str, tuple[tuple[str, str], ...], str, int]  # namespace, name, dimensions, unit, minute


def datums(line: str) -> list[tuple[str, dict[str, Any]]] | None:
    """The (namespace, metric datum) pairs of one EMF line, or None when the line is not EMF."""
    if not line.startswith('{"_aws"'):
        return None
    try:
        doc = json.loads(line)
        meta = doc["_aws"]
        when = dt.datetime.fromtimestamp(int(meta["Timestamp"]) / 1000, dt.UTC)
        directives = meta["CloudWatchMetrics"]
    except (ValueError, KeyError, TypeError):
        return None
    found = []
    for directive in directives:
        namespace = str(directive.get("Namespace") or "")
        for names in directive.get("Dimensions") or [[]]:
            dimensions = [{"Name": str(n), "Value": str(doc.get(n, ""))} for n in names]
            for metric in directive.get("Metrics") or []:
                raw = doc.get(metric.get("Name"))
                values = raw if isinstance(raw, list) else [raw]
                for value in values:
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        datum = {"MetricName": str(metric["Name"]), "Dimensions": dimensions, "Timestamp": when}
                        found.append((namespace, {**datum, "Value": float(value), "Unit": metric.get("Unit", "None")}))
    return found


class Aggregator:
    """Datums summed per metric, dimensions and minute (StatisticValues), until ``drain``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[Key, list[float]] = {}

    def add(self, found: list[tuple[str, dict[str, Any]]]) -> None:
        with self._lock:
            for namespace, d in found:
                dims = tuple((x["Name"], x["Value"]) for x in d["Dimensions"])
                minute = int(d["Timestamp"].timestamp()) // 60 * 60
                key = (namespace, d["MetricName"], dims, d["Unit"], minute)
                value = d["Value"]
                stats = self._stats.get(key)
                if stats is None:
                    self._stats[key] = [1, value, value, value]
                else:
                    stats[0] += 1
                    stats[1] += value
                    stats[2] = min(stats[2], value)
                    stats[3] = max(stats[3], value)

    def drain(self) -> dict[str, list[dict[str, Any]]]:
        """What was added since the last drain, per namespace, as PutMetricData's MetricData."""
        with self._lock:
            taken, self._stats = self._stats, {}
        batches: dict[str, list[dict[str, Any]]] = {}
        for (namespace, name, dims, unit, minute), (count, total, low, high) in taken.items():
            batches.setdefault(namespace, []).append(
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                    "Timestamp": dt.datetime.fromtimestamp(minute, dt.UTC),
                    "StatisticValues": {"SampleCount": count, "Sum": total, "Minimum": low, "Maximum": high},
                    "Unit": unit,
                }
            )
        return batches


class EmfRelay:
    """``sys.stdout`` for the stack: EMF lines to the aggregator, the rest to the terminal.

    Each thread keeps its own unfinished line: ``print`` writes the text and the newline apart,
    and two functions printing at once must not splice their lines.
    """

    def __init__(self, target: TextIO, put: Callable[[str, list[dict[str, Any]]], None], every_s: float = 1.0) -> None:
        self.target = target
        self.put = put
        self.every_s = every_s
        self.aggregator = Aggregator()
        self.relayed = 0
        self._partial = threading.local()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="emf-relay", daemon=True)

    # -- the file interface ---------------------------------------------------------------
    def write(self, text: str) -> int:
        pending = getattr(self._partial, "text", "") + text
        *lines, rest = pending.split("\n")
        self._partial.text = rest
        for line in lines:
            found = datums(line)
            if found is None:
                self.target.write(line + "\n")
            else:
                self.aggregator.add(found)
                self.relayed += 1
        return len(text)

    def flush(self) -> None:
        # A line printed without its newline (a prompt, progress) shows now; an EMF line always ends in one.
        pending = getattr(self._partial, "text", "")
        if pending and not pending.startswith('{"_aws"'):
            self.target.write(pending)
            self._partial.text = ""
        self.target.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno... as the terminal has them
        return getattr(self.target, name)

    # -- the pipeline -----------------------------------------------------------------------
    def start(self) -> EmfRelay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.send()

    def send(self) -> int:
        """Put what was aggregated into CloudWatch now; the number of datums sent."""
        sent = 0
        for namespace, data in self.aggregator.drain().items():
            for i in range(0, len(data), MAX_DATUMS):
                try:
                    self.put(namespace, data[i : i + MAX_DATUMS])
                    sent += len(data[i : i + MAX_DATUMS])
                except Exception as exc:  # a metric lost locally must never fail a function
                    log.warning("EMF relay: PutMetricData failed: %s", exc)
        return sent

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.send()


def install(endpoint: str, every_s: float = 1.0) -> EmfRelay:
    """Filter this process's stdout into moto's CloudWatch at ``endpoint`` until ``uninstall``."""
    from devstack.aws_local import boto_client

    cloudwatch = boto_client("cloudwatch", endpoint)

    def put(namespace: str, data: list[dict[str, Any]]) -> None:
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data)

    relay = EmfRelay(sys.stdout, put, every_s).start()
    sys.stdout = relay
    return relay


def uninstall(relay: EmfRelay) -> None:
    """Stop the relay (what it holds is sent) and give stdout back, if nobody replaced it since."""
    if sys.stdout is relay:
        sys.stdout = relay.target
    relay.stop()
