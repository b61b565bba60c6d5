"""``make demo``: a duplicate storm through the local stack, for every provider flow it has.

    make demo                          # against http://127.0.0.1:$PORT, or a stack it starts
    make demo ARGS="--events 500 --copies 4 --clients 32"
    make demo ARGS="--flows unipile,stripe,sends"
    make demo ARGS="--naive"           # the same storm against a check-then-insert processor
    make demo ARGS="--both"            # both, side by side

Prints a table per flow (deliveries, accepted, duplicates stopped per layer, effects
per event, lost, ack latency) and writes a JSON report and a PNG plot.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from devstack import launcher
from devstack.lambda_runtime import add_code_paths
from devstack.storm import FlowResult, run_storm
from devstack.storm_flows import discover
from devstack.template import ROOT


class ProgressBar:
    """One live line on stderr: what is running, a bar, done/total, rate."""

    def __init__(self, stream: Any = sys.stderr, width: int = 32) -> None:
        self.stream = stream
        self.width = width
        self.started = time.perf_counter()
        self.label = ""
        self.last = 0.0

    def __call__(self, label: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if label != self.label:
            if self.label:
                self.stream.write("\n")
            self.label, self.started = label, now
        elif done < total and now - self.last < 0.1:
            return
        self.last = now
        filled = int(self.width * done / total) if total else self.width
        rate = done / (now - self.started) if now > self.started else 0.0
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r  {label:<22} [{bar}] {done:>6}/{total:<6} {rate:7.0f}/s")
        self.stream.flush()

    def close(self) -> None:
        if self.label:
            self.stream.write("\n")
            self.label = ""


def table(result: dict[str, Any]) -> str:
    absent = set(result.get("absent_layers") or ())
    dups = {k: "n/a" if k in absent else v for k, v in result["duplicates_stopped"].items()}
    effects = ", ".join(f"{k} effect(s): {v}" for k, v in result["effects_per_event"].items())
    ack = result["ack_ms"]
    ok = result["lost"] == 0 and result["extra_effects"] == 0
    rows = [
        ("deliveries", f"{result['deliveries']} ({result['unique_events']} unique events)"),
        ("accepted at ingest", result["accepted"] if result["mode"] != "naive" else "n/a (no ingest dedup)"),
        ("dup stopped: DynamoDB ingest", dups["dynamodb_ingest"]),
        ("dup stopped: SQS FIFO", dups["sqs_fifo"]),
        ("dup stopped: worker event log", dups["worker_event_log"]),
        ("dup stopped: Postgres", dups["postgres"]),
        ("effects per event", effects),
        ("duplicate effects", result["extra_effects"]),
        ("lost", result["lost"]),
        ("HTTP errors (after retries)", result["http_errors"]),
        ("ack latency ms p50/p95/p99", f"{ack['p50']} / {ack['p95']} / {ack['p99']}"),
        ("throughput", f"{result['deliveries_per_s']} deliveries/s over {result['seconds']} s"),
        ("verdict", "exactly once" if ok else "NOT exactly once"),
    ]
    title = f"{result['flow']} ({result['mode']})"
    width = max(len(k) for k, _ in rows)
    lines = [title, "-" * len(title)] + [f"  {k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)


def plot(results: list[FlowResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat_ax, eff_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in results:
        values = sorted(r.latencies_ms)
        if values:
            ys = [(i + 1) / len(values) for i in range(len(values))]
            lat_ax.plot(values, ys, label=f"{r.flow} ({r.mode})")
    lat_ax.set_xscale("log")
    lat_ax.set_xlabel("ack latency (ms, log)")
    lat_ax.set_ylabel("fraction of deliveries")
    lat_ax.set_title("Ack latency (CDF)")
    lat_ax.legend()
    counts = sorted({k for r in results for k in r.effects_per_event})
    width = 0.8 / max(1, len(results))
    for j, r in enumerate(results):
        xs = [c + (j - (len(results) - 1) / 2) * width for c in counts]
        eff_ax.bar(xs, [r.effects_per_event.get(c, 0) for c in counts], width, label=f"{r.flow} ({r.mode})")
    eff_ax.set_xticks(counts)
    eff_ax.set_xlabel("effects per unique event (must be 1)")
    eff_ax.set_ylabel("unique events")
    eff_ax.set_title("Effects per event")
    eff_ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def storm_all(
    base_url: str,
    parameters: dict[str, str],
    *,
    events: int | None,
    copies: int,
    clients: int,
    modes: list[bool],
    graph_updated: bool = True,
    quiet: bool = False,
    only: set[str] | None = None,
    env: dict[str, dict[str, str]] | None = None,
) -> tuple[list[FlowResult], list[dict[str, str]]]:
    """Run the storm for every available flow and mode; return results and skipped flows.

    ``events`` None: each flow's own default (smaller for the flows added after Graph,
    LiveKit and WhatsApp, so the whole demo stays within a few minutes on moto).
    ``env``: the whole env.local.json, for function-level variables (Unipile's header name).
    """
    routes = {r["route"] for r in launcher.get_json(base_url + "/local/routes")}
    bar = None if quiet else ProgressBar()
    results: list[FlowResult] = []
    skipped: list[dict[str, str]] = []
    for naive in modes:
        for flow, reason in discover(parameters, routes, graph_updated, env):
            if only and flow.name not in only:
                continue
            if reason:
                if not naive:
                    skipped.append({"flow": flow.name, "reason": reason})
                continue
            if naive and not flow.supports_naive:
                continue
            results.append(
                run_storm(
                    flow,
                    base_url,
                    parameters["DATABASE_URL"],
                    n=events or flow.default_events,
                    copies=copies,
                    clients=clients,
                    naive=naive,
                    progress=bar,
                )
            )
            if bar:
                bar.close()
    return results, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('PORT', '3000')}")
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        help="unique events per flow (default: 200 for graph, livekit, whatsapp; 50 for the others)",
    )
    parser.add_argument("--copies", type=int, default=3, help="deliveries of each event")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--naive", action="store_true", help="storm the check-then-insert baseline instead")
    mode.add_argument("--both", action="store_true", help="storm the bundle, then the naive baseline")
    parser.add_argument(
        "--flows",
        default="",
        help="comma-separated flows to storm (default: every flow found): graph, livekit, whatsapp, unipile, "
        "standard, stripe, github, slack, sends",
    )
    parser.add_argument("--no-updated", action="store_true", help="Graph: no extra 'updated' notification")
    parser.add_argument("--report", type=Path, default=ROOT / ".local" / "demo" / "report.json")
    parser.add_argument("--plot", type=Path, default=ROOT / ".local" / "demo" / "report.png")
    args = parser.parse_args(argv)
    add_code_paths()  # the flows derive dedup keys with the adapters' own code

    with ExitStack() as stack:
        if launcher.answers(args.url):
            env_file = Path(os.environ.get("ENV_LOCAL_FILE") or ROOT / "env.local.json")
            running = launcher.RunningStack(args.url, env_file, None)
            print(f"storming the stack running on {args.url}")
        else:
            print(f"nothing answers on {args.url}: starting a stack for the demo (state kept in .local/)")
            port = int(args.url.rsplit(":", 1)[1]) if args.url.count(":") == 2 else None
            running = stack.enter_context(
                launcher.child_stack(port=port, fresh=False, env_file=ROOT / "env.local.json")
            )
        modes = [True] if args.naive else [False, True] if args.both else [False]
        results, skipped = storm_all(
            running.url,
            running.parameters(),
            events=args.events,
            copies=args.copies,
            clients=args.clients,
            modes=modes,
            graph_updated=not args.no_updated,
            only={f for f in args.flows.split(",") if f},
            env=running.env(),
        )
    for s in skipped:
        print(f"skipped {s['flow']}: {s['reason']}")
    summaries = [r.summary() for r in results]
    for summary in summaries:
        print()
        print(table(summary))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    report = {"events": args.events or "per flow", "copies": args.copies, "clients": args.clients, "flows": summaries}
    args.report.write_text(json.dumps({**report, "skipped": skipped}, indent=2) + "\n", encoding="utf-8")
    plot(results, args.plot)
    print(f"\nreport: {args.report}\nplot:   {args.plot}")
    broken = [s for s in summaries if s["mode"] != "naive" and (s["lost"] or s["extra_effects"])]
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
