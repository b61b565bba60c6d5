"""The serialised moto server in a process of its own: ``python -m devstack.moto_process --port N``.

The local stack runs its embedded AWS here rather than in a thread: moto is pure
Python, and sharing one interpreter lock with the gateway's request threads made
every call wait for them. The child leaves when its parent does, so a killed stack
never leaves the port taken.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from types import FrameType
from typing import Any

from devstack.moto_server import STATS_PATH, SerializedMotoServer


class MotoProcess:
    """Starts and stops the child; same ``url``/``stats`` as SerializedMotoServer."""

    def __init__(self, host: str, port: int) -> None:
        self.url = f"http://{host}:{port}"
        # A session of its own: Ctrl-C on `make run` must not stop AWS before the stack saved its state.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "devstack.moto_process", "--host", host, "--port", str(port)],
            start_new_session=True,
        )

    def start(self, timeout: float = 30.0) -> MotoProcess:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.stats  # noqa: B018 - answers once the server is up
                return self
            except OSError:
                if self._process.poll() is not None:
                    raise RuntimeError(f"moto exited with {self._process.returncode} (port taken?)") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @property
    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + STATS_PATH, timeout=2) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = SerializedMotoServer(args.host, args.port).start()
    done = threading.Event()
    parent = os.getppid()

    def stop(signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not done.wait(1.0):
        if os.getppid() != parent:
            break  # the stack died without stopping us
    server.stop()


if __name__ == "__main__":
    main()
