"""Start ``python -m devstack.run`` in a child process and wait until it answers (demo, bench, tests)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from devstack.template import ROOT


def free_port() -> int:
    """A port free now, whose neighbour (the embedded AWS) is free too."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports")


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # local URLs only
        return json.loads(resp.read())


def answers(url: str) -> bool:
    try:
        get_json(url.rstrip("/") + "/local/health", timeout=1.0)
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class RunningStack:
    url: str
    env_file: Path
    process: subprocess.Popen[bytes] | None  # None: a stack that was already running

    def env(self) -> dict[str, dict[str, str]]:
        data: dict[str, dict[str, str]] = json.loads(self.env_file.read_text(encoding="utf-8"))
        return data

    def parameters(self) -> dict[str, str]:
        return self.env().get("Parameters", {})


@contextmanager
def child_stack(
    *,
    port: int | None = None,
    fresh: bool = True,
    state_dir: Path | None = None,
    env_file: Path | None = None,
    extra_env: dict[str, str] | None = None,
    log: TextIO | None = None,
    timeout: float = 90.0,
) -> Iterator[RunningStack]:
    """A stack in a child process on ``port`` (free if None); stopped with SIGINT at the end."""
    port = port or free_port()
    state_dir = state_dir or ROOT / ".local"
    env_file = env_file or state_dir / "env.local.json"
    env = {
        **os.environ,
        "PORT": str(port),
        "MOTO_PORT": str(port + 1),
        "LOCAL_STATE_DIR": str(state_dir),
        "ENV_LOCAL_FILE": str(env_file),
        "FRESH": "1" if fresh else "",
        **(extra_env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.run"],
        cwd=ROOT,
        env=env,
        stdout=log or subprocess.DEVNULL,
        stderr=log or subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not answers(url):
            if process.poll() is not None:
                raise RuntimeError(f"the local stack exited with {process.returncode} before answering")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the local stack did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.2)
        yield RunningStack(url, env_file, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
