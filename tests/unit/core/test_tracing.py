"""Tracing follows the template's Tracing parameter; off, it costs nothing (no X-Ray SDK import)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PROBE = """
import sys
from exactly_once.core.tracing import traced
def handler(event, context):
    return {"ok": event}
wrapped = traced(handler)
print(wrapped is handler, "aws_xray_sdk" in sys.modules, wrapped({"a": 1}, None))
"""


def run_probe(**env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "POWERTOOLS_TRACE_DISABLED"} | env
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True, check=True, cwd=ROOT
    )
    return out.stdout.strip()


@pytest.mark.parametrize("env", [{}, {"POWERTOOLS_TRACE_DISABLED": "true"}])
def test_off_the_handler_is_untouched_and_the_xray_sdk_never_imported(env):
    assert run_probe(**env) == "True False {'ok': {'a': 1}}"


def test_on_the_handler_runs_inside_the_tracer():
    # Outside Lambda the Tracer records nothing, but the wrapper and the SDK are there.
    assert run_probe(POWERTOOLS_TRACE_DISABLED="false") == "False True {'ok': {'a': 1}}"


def test_every_handler_is_traced_outermost():
    for path in sorted((ROOT / "functions").glob("*/*.py")):
        tree = ast.parse(path.read_text())
        (handler,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "handler"]
        first = handler.decorator_list[0]
        assert isinstance(first, ast.Name) and first.id == "traced", f"{path.name}: @traced first on handler"
