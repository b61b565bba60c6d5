#!/usr/bin/env bash
# pip-audit on requirements.lock (the pinned dependency closure, see .ci/lock.py).
# pip-audit asks PyPI's JSON API (/pypi/<name>/<version>/json) for each pin's advisories. Where that API
# is not reachable (an offline CI runner, a mirror without the per-version endpoint) the step says so
# and goes on: "could not check" must not read as "vulnerable", and must not read as "clean" either, so
# it writes why to $STATUS and .ci/run's last line says the audit did not run instead of "all passed".
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
probe=$("$PY" - <<'PYEOF'
import json, urllib.request
try:
    with urllib.request.urlopen("https://pypi.org/pypi/pip/24.0/json", timeout=15) as r:  # noqa: S310
        print("ok" if "vulnerabilities" in json.load(r) else "no-advisories")
except Exception as exc:  # any network or HTTP failure means: cannot audit here
    print(f"unreachable ({type(exc).__name__}: {exc})")
PYEOF
)
# The outcome, for .ci/run's last line: "passed" only when pip-audit ran on both files and found nothing.
STATUS=${AUDIT_STATUS_FILE:-.local/audit.status}
mkdir -p "$(dirname "$STATUS")"
if [ "$probe" != "ok" ]; then
  echo "pip-audit: NOT RUN, PyPI's advisory API is not reachable from this machine: $probe"
  echo "pip-audit: NO VULNERABILITY CHECK was made; run 'make scan' where https://pypi.org is reachable"
  echo "not run (PyPI's advisory API unreachable: $probe)" >"$STATUS"
  exit 0
fi
echo "failed" >"$STATUS"
# --no-deps/--disable-pip: the lock is the full pinned closure, the layer's file its exact hashed pins.
.venv/bin/pip-audit --strict --no-deps --disable-pip --progress-spinner off -r requirements.lock || exit 1
.venv/bin/pip-audit --strict --no-deps --disable-pip --progress-spinner off -r layers/common/requirements.txt || exit 1
echo "passed" >"$STATUS"
