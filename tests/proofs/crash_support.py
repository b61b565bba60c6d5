"""Shared steps of the crash proofs: kill a handler at a boundary, then let time, retries and reapers run."""

from __future__ import annotations

import time
from typing import Any

import time_machine

from devstack.lambda_runtime import function_timeout
from tests.harness import Stack
from tests.proofs.children import KILLED, ChildResult, run_child

WORKER = "EventWorkerFunction"
EVENTS_QUEUE = "EventsQueue"


def crash_env(stack: Stack, boundary: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**stack.env, **(extra or {}), "EO_CRASH_AT": boundary}


def expect_death(result: ChildResult, boundary: str, what: str) -> ChildResult:
    """The child SIGKILLed itself at ``boundary``: exit -9 and that crashpoint's marker; a hang is a failure."""
    assert not result.hung, f"{what} hung (no answer before the timeout) instead of dying at {boundary}: {result}"
    assert result.exitcode == KILLED, f"{what} did not die at {boundary}: {result}"
    assert result.marker is not None, f"{what} was SIGKILLed without the marker of a crashpoint: {result}"
    assert result.marker.name == boundary, f"{what} died at {result.marker.name}, armed at {boundary}"
    return result


def kill_http(
    stack: Stack,
    boundary: str,
    function: str,
    method: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    extra_env: dict[str, str] | None = None,
) -> ChildResult:
    """The real HTTP handler in a child armed to SIGKILL itself at ``boundary``; it must die there."""
    args = (function, method, url, body, headers)
    result = run_child("tests.proofs.children:http_call", args, crash_env(stack, boundary, extra_env))
    return expect_death(result, boundary, function)


def kill_poll(
    stack: Stack,
    boundary: str,
    function: str = WORKER,
    queue: str = EVENTS_QUEUE,
    extra_env: dict[str, str] | None = None,
) -> ChildResult:
    """One SQS poll of the real worker in a child armed at ``boundary``: the batch stays in flight."""
    args = (function, stack.aws.physical[queue], stack.aws.arns[queue])
    result = run_child("tests.proofs.children:poll_once", args, crash_env(stack, boundary, extra_env))
    return expect_death(result, boundary, function)


def kill_call(
    stack: Stack, boundary: str, path: str, *args: Any, extra_env: dict[str, str] | None = None
) -> ChildResult:
    """A library function (reaper, relay, scheduler step) in a child armed at ``boundary``."""
    result = run_child("tests.proofs.children:call", (path, *args), crash_env(stack, boundary, extra_env))
    return expect_death(result, boundary, path)


def queue_visibility(stack: Stack, queue: str = EVENTS_QUEUE) -> int:
    props = stack.aws.template.doc["Resources"][queue]["Properties"]
    return int(props.get("VisibilityTimeout", 30))


def after_visibility_timeout(stack: Stack, queue: str = EVENTS_QUEUE) -> time_machine.travel:
    """SQS gives an in-flight message back once its visibility timeout has passed: travel past it."""
    return time_machine.travel(time.time() + queue_visibility(stack, queue) + 5)


def after_invocation_deadline(function: str) -> time_machine.travel:
    """The dead invocation's ingest reservation lasts until its deadline (the function timeout)."""
    return time_machine.travel(time.time() + function_timeout(function) + 5)


def redrive(stack: Stack, function: str = WORKER, queue: str = EVENTS_QUEUE) -> int:
    """Let SQS redeliver what a dead worker held, and run the worker until the queue is empty."""
    with after_visibility_timeout(stack, queue):
        return stack.drain(function, queue)


def dlq_depth(stack: Stack) -> int:
    """Messages parked in every dead-letter queue of the template (a proof wants none)."""
    names = [n for n in stack.aws.template.of_type("AWS::SQS::Queue") if "DeadLetter" in n or n.endswith("DLQ")]
    return sum(stack.queue_depth(n) for n in names if n in stack.aws.physical)
