"""Steps run in a spawned child process (a fresh interpreter, like a Lambda sandbox) that may be SIGKILLed.

``run_child`` starts one, waits, and returns its exit code and, when it lived, what the step returned.
A child armed with ``EO_CRASH_AT`` dies by SIGKILL at that crashpoint: exit code ``-9``, and the marker
``crashpoint()`` wrote just before (name and call site, see ``tests/proofs/meter.py``). A child that does
not finish within the timeout is a hang: it is killed too, but reported as ``hung``, never as ``killed``.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import queue
import signal
import time
from dataclasses import dataclass
from typing import Any

from tests.proofs import meter

KILLED = -signal.SIGKILL


@dataclass(frozen=True)
class ChildResult:
    exitcode: int | None
    value: Any = None
    #: it outlived the timeout (and was then killed by us): a hang, never a crash at a crashpoint
    hung: bool = False
    pid: int | None = None
    #: the marker the child wrote at the crashpoint before it SIGKILLed itself
    marker: meter.Kill | None = None

    @property
    def killed(self) -> bool:
        """Died by its own SIGKILL at a crashpoint: exit -9, no hang, and the crashpoint's marker left."""
        return self.exitcode == KILLED and not self.hung and self.marker is not None

    def died_at(self, boundary: str) -> bool:
        return self.killed and self.marker is not None and self.marker.name == boundary


def _target(step: str, args: tuple[Any, ...], env: dict[str, str], out: Any) -> None:
    os.environ.update(env)
    from devstack.lambda_runtime import add_code_paths

    add_code_paths()
    module, _, name = step.partition(":")
    out.put(getattr(importlib.import_module(module), name)(*args))


def run_child(step: str, args: tuple[Any, ...], env: dict[str, str], timeout: float = 120.0) -> ChildResult:
    """Run ``module:function(*args)`` in a spawned child with ``env``; a hang if it outlives ``timeout``."""
    seen = meter.current()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_target, args=(step, args, {**env, **seen.marker_env()}, out))
    proc.start()
    seen.spawn()
    value = None
    answered = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = out.get(timeout=0.1)
            answered = True
            break
        except queue.Empty:
            if not proc.is_alive():  # killed (the expected crash) before it could answer
                break
    proc.join(timeout=10)
    hung = proc.exitcode is None and not answered
    if proc.exitcode is None:
        proc.kill()
        proc.join()
    return ChildResult(proc.exitcode, value, hung=hung, pid=proc.pid, marker=seen.kill_of(proc.pid))


# -- steps (module-level so a spawned child can import them) ----------------------------------------------


def http_call(function: str, method: str, url: str, body: bytes, headers: dict[str, str]) -> int:
    """One API Gateway request to the function's real handler; the status code."""
    from devstack.lambda_runtime import LambdaContext, apigw_event, function_timeout, load_handler

    handler = load_handler(function)
    context = LambdaContext(function_name=function, timeout_s=function_timeout(function))
    return int(handler(apigw_event(method, url, body, headers), context)["statusCode"])


def poll_once(function: str, queue_url: str, queue_arn: str) -> int:
    """One receive -> handler -> delete round of the SQS event source mapping; messages handled."""
    from devstack.aws_local import boto_client
    from devstack.lambda_runtime import function_timeout, load_handler
    from devstack.poller import QueuePoller

    poller = QueuePoller(
        sqs=boto_client("sqs", os.environ["AWS_ENDPOINT_URL"]),
        queue_url=queue_url,
        queue_arn=queue_arn,
        handler=load_handler(function),
        function_name=function,
        timeout_s=function_timeout(function),
    )
    return poller.poll_once()


def call(path: str, *args: Any) -> Any:
    """Any library function ``module:function`` (a reaper, a relay, a job step), with a fresh connection."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)(*args)


def reap(only: list[str] | None = None) -> dict[str, int]:
    """The scheduled ClaimReaperFunction's work: every registered reaper (or ``only`` these), once."""
    from exactly_once.core import db
    from exactly_once.ops.reapers import run_all

    return run_all(db.connection(), only=only)
