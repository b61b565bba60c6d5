"""Runs every bench/*_bench.py in turn (make bench), each in a fresh interpreter.

A fresh process per benchmark: each starts its own local AWS, fakes and environment, and the
library caches its clients per process, so one benchmark's stopped servers cannot leak into the next.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    failed = []
    root = Path(__file__).resolve().parent.parent
    for path in sorted(Path(__file__).parent.glob("*_bench.py")):
        name = f"bench.{path.stem}"
        print(f"\n=== {name}", flush=True)
        # A fixed module of this folder, run with this interpreter: no untrusted input reaches the command.
        result = subprocess.run([sys.executable, "-m", name], cwd=root, check=False)
        if result.returncode != 0:  # keep going: one broken bench must not hide the others
            print(f"{name} failed: exit {result.returncode}", flush=True)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
