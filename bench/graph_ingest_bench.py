"""Graph ingest: AWS calls per unique item and per duplicate, and cold start as a ratio.

AWS calls are counted with botocore's ``before-call`` event on the ingest's own
clients, against the serialised moto server. Cold start is the time to import a
handler module and build its clients in a fresh interpreter, divided by the time
of ``import boto3`` plus one client in the same run (medians of several runs).

"Its clients" (issue 17): those built at init, plus the ones its first request builds
(``FIRST_REQUEST_CLIENTS``), so that a client moved from init to first use is still
counted. Both sides run with the layer's packages only, as on Lambda: a package that
this virtualenv has for the tests but the layer does not ship (``cryptography``, which
PyJWT would load if present; ``certifi``, which botocore would prefer) is refused.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from collections import Counter
from typing import Any

from bench.common import median, table, write_result
from devstack.aws_local import LocalAws
from devstack.fakes import FakeProviders
from devstack.lambda_runtime import LAYER_DIR, LambdaContext, add_code_paths, apigw_event
from devstack.moto_server import SerializedMotoServer
from devstack.template import ROOT, Template
from tests.graph_support import HEADERS, URL, body, item
from tests.harness import stack_env

COLD_RUNS = 7
#: The AWS clients a function's first ordinary request builds when it did not build them at init
#: (core/aws.py builds a client, and imports boto3, on first use). The ingest functions build theirs
#: at init; the send and event workers, the job worker, the console page, the authorizer and the
#: migration reach no AWS service on an ordinary request.
FIRST_REQUEST_CLIENTS: dict[str, tuple[str, ...]] = {
    "JobSchedulerFunction": ("sqs",),  # every tick queues the due jobs
    "JobTriggerFunction": ("sqs",),  # POST /jobs/{user_id}/trigger queues the job
    "SendEnqueueFunction": ("sqs",),  # a new send is relayed after commit
    "ClaimReaperFunction": ("sqs",),  # the outbox sweeper relays
    "GraphSubscriptionsFunction": ("sqs",),  # the resyncs queue the mails found
}


def _count_calls(clients: list[Any]) -> Counter[str]:
    calls: Counter[str] = Counter()
    for client in clients:
        client.meta.events.register(
            "before-call.*.*", lambda model, **_: calls.update([f"{model.service_model.service_name}.{model.name}"])
        )
    return calls


def aws_calls(env: dict[str, str]) -> dict[str, Any]:
    os.environ.update(env)
    add_code_paths()
    from exactly_once.core import aws
    from exactly_once.flows.graph.adapter import GraphAdapter
    from exactly_once.ingest.build import webhook_ingest

    def container() -> tuple[Any, Counter[str]]:
        aws.sqs.cache_clear()
        aws.dynamodb.cache_clear()
        ingest = webhook_ingest(GraphAdapter(env["GRAPH_CLIENT_STATE"]))
        return ingest, _count_calls([aws.sqs(), aws.dynamodb()])

    n = 10
    payload = body(*[item(f"bench-{i}") for i in range(n)]).encode()
    event = apigw_event("POST", URL, payload, HEADERS)
    warm, calls = container()
    warm.handle(event, LambdaContext())
    unique = dict(calls)
    calls.clear()
    cold, cold_calls = container()  # another container: no local cache
    cold.handle(event, LambdaContext())
    dup_other = dict(cold_calls)
    calls.clear()
    warm.handle(event, LambdaContext())  # the same warm container again
    dup_warm = dict(calls)

    def per_item(c: dict[str, int], prefix: str) -> float:
        return sum(v for k, v in c.items() if k.startswith(prefix)) / n

    return {
        "items_per_post": n,
        "unique": {
            "calls": unique,
            "dynamodb_writes_per_item": per_item(unique, "dynamodb."),
            "sqs_requests_per_post": sum(v for k, v in unique.items() if k.startswith("sqs.")),
        },
        "duplicate_new_container": {
            "calls": dup_other,
            "dynamodb_writes_per_item": per_item(dup_other, "dynamodb."),
            "sqs_requests_per_post": sum(v for k, v in dup_other.items() if k.startswith("sqs.")),
        },
        "duplicate_same_container": {"calls": dup_warm, "total_calls": sum(dup_warm.values())},
    }


_SNIPPET = """
import sys, time
class _NotShipped:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {refused!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the layer)", name=name)
sys.meta_path.insert(0, _NotShipped())
t = time.perf_counter()
{body}
print(time.perf_counter() - t)
"""


def not_in_layer() -> frozenset[str]:
    """Top-level modules installed here whose distribution the layer does not ship (its requirements.txt)."""
    pinned = (LAYER_DIR / "requirements.txt").read_text(encoding="utf-8")
    layer = {_normalise(m) for m in re.findall(r"^([A-Za-z0-9_.-]+)==", pinned, re.MULTILINE)}
    layer.add("exactly-once")  # the library itself (the layer's python/ folder)
    return frozenset(
        top
        for top, dists in importlib.metadata.packages_distributions().items()
        if not any(_normalise(d) in layer for d in dists)
    )


def _normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _time_in_fresh_interpreter(code: str, env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _SNIPPET.format(body=code, refused=sorted(not_in_layer()))],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return float(out.stdout.strip().splitlines()[-1])


def cold_starts(env: dict[str, str]) -> dict[str, Any]:
    """Each function's import and clients over the baseline, in rounds.

    A round times the baseline, then every function once; a function's ratio is the median of its
    per-round ratios. On a machine others share, a burst of load then slows one round of everything
    rather than all the runs of one function.
    """
    template = Template.load()
    child_env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(ROOT), str(LAYER_DIR)])}
    codes: dict[str, tuple[str, dict[str, str], tuple[str, ...]]] = {}
    for name, fn in template.functions().items():
        props = fn["Properties"]
        module = str(props["Handler"]).rpartition(".")[0]
        fenv = {**child_env, "PYTHONPATH": os.pathsep.join([str(ROOT / props["CodeUri"]), str(LAYER_DIR)])}
        clients = FIRST_REQUEST_CLIENTS.get(name, ())
        code = f"import {module}" + "".join(f"\nfrom exactly_once.core import aws\naws.{c}()" for c in clients)
        codes[name] = (code, fenv, clients)
    baseline: list[float] = []
    runs: dict[str, list[float]] = {name: [] for name in codes}
    ratios: dict[str, list[float]] = {name: [] for name in codes}
    errors: dict[str, str] = {}
    for _ in range(COLD_RUNS):
        base = _time_in_fresh_interpreter("import boto3\nboto3.client('sqs', region_name='us-east-1')", child_env)
        baseline.append(base)
        for name, (code, fenv, _clients) in codes.items():
            if name in errors:
                continue
            try:
                took = _time_in_fresh_interpreter(code, fenv)
            except subprocess.CalledProcessError as exc:
                errors[name] = exc.stderr.strip().splitlines()[-1][:200]
                continue
            runs[name].append(took)
            ratios[name].append(took / base)
    results: dict[str, Any] = {
        "baseline_import_boto3_plus_client_s": median(baseline),
        "rounds": COLD_RUNS,
        "not_in_layer_refused": sorted(not_in_layer() & {"cryptography", "certifi"}),
        "functions": {},
    }
    for name, (_code, _fenv, clients) in codes.items():
        if name in errors:
            results["functions"][name] = {"error": errors[name]}
            continue
        results["functions"][name] = {
            "import_s": median(runs[name]),
            "ratio": median(ratios[name]),
            "first_request_clients": list(clients),
        }
    return results


def main() -> None:
    moto = SerializedMotoServer().start()
    fakes = FakeProviders().start()
    try:
        local = LocalAws(moto.url).provision()
        env = stack_env(local, fakes, "postgresql://postgres@127.0.0.1:5432/postgres")
        calls = aws_calls(env)
        cold = cold_starts(env)
    finally:
        fakes.stop()
        moto.stop()
    write_result("graph_ingest", {"aws_calls": calls, "cold_start": cold})
    print(
        table(
            [
                ("unique item", calls["unique"]["dynamodb_writes_per_item"], calls["unique"]["sqs_requests_per_post"]),
                (
                    "duplicate, other container",
                    calls["duplicate_new_container"]["dynamodb_writes_per_item"],
                    calls["duplicate_new_container"]["sqs_requests_per_post"],
                ),
                ("duplicate, same warm container", calls["duplicate_same_container"]["total_calls"] / 10, 0),
            ],
            ("10 items per POST", "DynamoDB writes/item", "SQS requests/POST"),
        )
    )
    print()
    rows = [(n, f"{r['ratio']:.2f}" if "ratio" in r else r["error"]) for n, r in cold["functions"].items()]
    print(f"baseline (import boto3 + one client): {cold['baseline_import_boto3_plus_client_s'] * 1000:.0f} ms")
    print(table(rows, ("handler", "cold start / baseline")))
    print(json.dumps({"written": "bench/results/graph_ingest.json"}))


if __name__ == "__main__":
    main()
