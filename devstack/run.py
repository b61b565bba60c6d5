"""``make run``: the whole bundle on http://127.0.0.1:$PORT until Ctrl-C (``FRESH=1`` forgets state).

Environment: PORT (3000), MOTO_PORT (PORT+1), DATABASE_URL, FRESH, LOCAL_STATE_DIR (.local),
ENV_LOCAL_FILE (env.local.json), LOCAL_DB_NAME (exactly_once), LOCAL_RETRY_DELAY (1 s),
LOCAL_POLLERS (1 per SQS event source), LOCAL_NO_SCHEDULES, LOCAL_LOG (INFO).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType

from devstack.stack import LocalStack, StackConfig

log = logging.getLogger("devstack")


def banner(stack: LocalStack) -> str:
    assert stack.aws is not None and stack.database is not None and stack._gateway is not None
    lines = [
        f"exactly-once local stack on {stack.url}",
        f"  AWS (moto, serialised): {stack.aws.endpoint}    Postgres: {stack.database.source}",
        "  routes:",
    ]
    for route in stack._gateway.routes:
        auth = f"  [authorizer {route.authorizer}]" if route.authorizer else ""
        lines.append(f"    {route.method:6} {stack.url}{route.path} -> {route.function}{auth}")
    lines += [
        f"  fake providers: {stack.url}/fake/...   effects: {stack.url}/local/effects   state: {stack.url}/local/state",
        f"  env: {stack.config.env_file} (sam local invoke --env-vars)    Ctrl-C to stop",
    ]
    return "\n".join(lines)


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("LOCAL_LOG", "INFO"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    # Every request thread shares the in-process boto3 clients (on Lambda each container has its own):
    # their pool of 10 overflows under a storm, which costs a reconnect, not an error.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    logging.getLogger("devstack.access").setLevel(os.environ.get("LOCAL_ACCESS_LOG", "WARNING"))
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    # Before starting: a Ctrl-C during the start must stop the stack, not interrupt it halfway.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    stack = LocalStack(StackConfig.from_env())
    try:
        stack.start()
    except Exception:
        stack.stop()
        raise
    print(banner(stack), flush=True)
    stopping.wait()
    log.info("stopping: saving the AWS state to %s", stack.snapshot_path)
    stack.stop()


if __name__ == "__main__":
    main()
