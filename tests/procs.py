"""Child processes for races: each loads the real handler with the stack's environment, waits for a
common start time, then fires. Spawned (not forked), so each is a fresh interpreter like a Lambda sandbox."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

RETRIES_503 = 100  # tries of one delivery answered 503 before its 503 stands as the final answer


def _prepare(env: dict[str, str]) -> None:
    os.environ.update(env)
    from devstack.lambda_runtime import add_code_paths

    add_code_paths()


def deliver(
    env: dict[str, str], function: str, requests: list[tuple[str, str, bytes, dict[str, str]]], start_at: float
) -> list[int]:
    """POST each request to the function's handler; return each request's final status code.

    A 503 (another invocation holds the event's reservation past ingest's short wait, which a busy
    machine can stretch) is retried, as every provider retries a 5xx: the final answer is what counts.
    """
    _prepare(env)
    from devstack.lambda_runtime import LambdaContext, apigw_event, load_handler

    handler = load_handler(function)
    time.sleep(max(0.0, start_at - time.time()))
    statuses = []
    for method, url, body, headers in requests:
        for _ in range(RETRIES_503):
            result = handler(apigw_event(method, url, body, headers), LambdaContext(function_name=function))
            if int(result["statusCode"]) != 503:
                break
            time.sleep(0.05)  # the provider's retry comes later; this only yields to the holder
        statuses.append(int(result["statusCode"]))
    return statuses


def work(env: dict[str, str], bodies: list[str], start_at: float, function: str = "EventWorkerFunction") -> int:
    """Hand queue message bodies straight to the worker handler (an SQS batch of one each); return failures."""
    _prepare(env)
    from devstack.lambda_runtime import LambdaContext, fifo_message, load_handler, sqs_event

    handler = load_handler(function)
    time.sleep(max(0.0, start_at - time.time()))
    failures = 0
    for body in bodies:
        result = handler(
            sqs_event([fifo_message(body)], "arn:aws:sqs:us-east-1:000000000000:EventsQueue.fifo"),
            LambdaContext(function_name=function, timeout_s=60),
        )
        failures += len(result.get("batchItemFailures", []))
    return failures


def run_parallel(fn: Any, arg_sets: list[tuple[Any, ...]], processes: int = 4) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
        return [f.result(timeout=180) for f in [pool.submit(fn, *args) for args in arg_sets]]
