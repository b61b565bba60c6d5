"""Puts the layer and the function folders on the path, for tests and for child processes."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
_functions = sorted(str(p) for p in (ROOT / "functions").iterdir() if p.is_dir())
_paths = [str(ROOT), str(ROOT / "layers" / "common"), *_functions]
for _p in reversed(_paths):
    if _p not in sys.path:
        sys.path.insert(0, _p)
os.environ["PYTHONPATH"] = os.pathsep.join([*_paths, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
