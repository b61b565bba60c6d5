"""Runs every bench/*_bench.py in turn (make bench)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main() -> int:
    failed = []
    for path in sorted(Path(__file__).parent.glob("*_bench.py")):
        name = f"bench.{path.stem}"
        print(f"\n=== {name}", flush=True)
        try:
            importlib.import_module(name).main()
        except Exception as exc:  # keep going: one broken bench must not hide the others
            print(f"{name} failed: {exc!r}")
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
