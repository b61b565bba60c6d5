"""Our verifiers against deliveries signed by the providers' own packages (code this project did not write):
livekit-api's AccessToken (LiveKit's server signs webhooks with it), standardwebhooks, stripe, slack_sdk and,
for GitHub, ``@octokit/webhooks-methods`` (published by GitHub's Octokit org on npm; run under node from
tests/proofs/node/). Random bodies signed by the SDK must pass our adapter's ``authenticate``; the same bytes
changed by one byte, or signed with another secret, must not. WhatsApp and Unipile publish no signing package:
their tests sign by the documented algorithm (tests/whatsapp_support.py, tests/generic_support.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exactly_once.core.errors import UnauthorizedError
from exactly_once.ingest.apigw import Request
from tests import generic_support as g
from tests import livekit_support as lk
from tests.harness import TEST_SECRETS

EXAMPLES = 60
bodies = st.dictionaries(
    st.sampled_from(["id", "event", "text", "n"]), st.text(max_size=40) | st.integers(), min_size=1
)
bodies = bodies.map(lambda d: json.dumps(d, ensure_ascii=False).encode())


@pytest.fixture(scope="module", autouse=True)
def _secrets() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in TEST_SECRETS}
    os.environ.update(TEST_SECRETS)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _adapters() -> dict[str, tuple[Any, str, Callable[[bytes, str], dict[str, str]], dict[str, str]]]:
    from exactly_once.flows.generic.slack import SlackAdapter
    from exactly_once.flows.generic.standard import StandardWebhooksAdapter
    from exactly_once.flows.generic.stripe import StripeAdapter
    from exactly_once.flows.livekit.adapter import LiveKitAdapter

    return {
        # provider: (adapter, path, sign(body, secret) with the provider's package, path params)
        "livekit": (
            LiveKitAdapter(lk.API_KEY, lk.API_SECRET),
            "/webhooks/livekit",
            lambda b, s: lk.headers(b, secret=s),
            {},
        ),
        "standard": (
            StandardWebhooksAdapter.from_env(),
            "/webhooks/standard/acme",
            lambda b, s: g.standard_headers(b, "msg_1", secret=s),
            {"source": "acme"},
        ),
        "stripe": (StripeAdapter.from_env(), "/webhooks/stripe", lambda b, s: g.stripe_headers(b, secret=s), {}),
        "slack": (SlackAdapter.from_env(), "/webhooks/slack", lambda b, s: g.slack_headers(b, secret=s), {}),
    }


OTHER = {
    "livekit": "another-livekit-secret-0123456789abcdef0123",
    "standard": "whsec_" + "QW5vdGhlclNlY3JldEFub3RoZXJTZWNyZXQ=",
    "stripe": "whsec_another",
    "slack": "another-slack-secret",
}
RIGHT = {
    "livekit": lk.API_SECRET,
    "standard": g.STANDARD_SECRET,
    "stripe": g.STRIPE_SECRET,
    "slack": g.SLACK_SECRET,
}


def _passes(adapter: Any, path: str, body: bytes, headers: dict[str, str], params: dict[str, str]) -> bool:
    request = Request("POST", path, body, {k.lower(): v for k, v in headers.items()}, {}, params)
    try:
        adapter.authenticate(request)
    except UnauthorizedError:
        return False
    return True


@pytest.mark.parametrize("provider", sorted(RIGHT))
def test_sdk_signed_deliveries_pass_and_tampered_ones_fail(proof, provider):
    adapter, path, sign, params = _adapters()[provider]
    seen = {"ok": 0, "tampered": 0, "wrong_secret": 0}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=bodies, position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=127))
    def check(body: bytes, position: int, flip: int) -> None:
        headers = sign(body, RIGHT[provider])
        assert _passes(adapter, path, body, headers, params), "signed by the provider's package, refused by us"
        seen["ok"] += 1
        i = position % len(body)
        tampered = body[:i] + bytes([body[i] ^ flip]) + body[i + 1 :]
        assert not _passes(adapter, path, tampered, headers, params), "one byte changed, still accepted"
        seen["tampered"] += 1
        assert not _passes(adapter, path, body, sign(body, OTHER[provider]), params), "another secret accepted"
        seen["wrong_secret"] += 1

    check()
    package = {"livekit": "livekit-api", "standard": "standardwebhooks", "stripe": "stripe", "slack": "slack_sdk"}
    proof.record(
        kind="signer",
        flow=provider,
        name=f"signed by {package[provider]}, random bodies",
        cases=sum(seen.values()),
        held=(
            f"{seen['ok']} accepted; {seen['tampered']} one-byte changes and "
            f"{seen['wrong_secret']} other secrets refused"
        ),
    )


# -- GitHub: @octokit/webhooks-methods, GitHub's own signer, in node ------------------------------------------
NODE_DIR = Path(__file__).resolve().parent / "node"
OCTOKIT = NODE_DIR / "node_modules" / "@octokit" / "webhooks-methods"
#: what `make install` / .ci/run runs; the fixture runs it too when the package is missing
NPM_CI = ["npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"]
GITHUB_OTHER = "another-github-webhook-secret"


class NodeSigner:
    """tests/proofs/node/signer.mjs: one JSON request a line to @octokit/webhooks-methods, one answer back."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            ["node", str(NODE_DIR / "signer.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            cwd=NODE_DIR,
        )

    def _ask(self, **request: Any) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        assert line, f"signer.mjs exited with {self._proc.poll()}"
        answer: dict[str, Any] = json.loads(line)
        assert "error" not in answer, answer["error"]
        return answer

    def sign(self, body: bytes, secret: str) -> str:
        # The package signs a string (as UTF-8), the JSON text GitHub sends.
        return str(self._ask(op="sign", secret=secret, payload=body.decode("utf-8"))["signature"])

    def verify(self, body: bytes, secret: str, signature: str) -> bool:
        return bool(self._ask(op="verify", secret=secret, payload=body.decode("utf-8"), signature=signature)["valid"])

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _node_major() -> int:
    out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout
    try:
        return int(out.strip().lstrip("v").split(".")[0])
    except ValueError:
        return 0


@pytest.fixture(scope="module")
def octokit() -> Iterator[NodeSigner]:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run @octokit/webhooks-methods (GitHub's signer); not on PATH")
    if _node_major() < 20:
        pytest.skip("@octokit/webhooks-methods 6 needs node >= 20")
    if not OCTOKIT.exists():
        done = subprocess.run(NPM_CI, capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0 or not OCTOKIT.exists():
            pytest.fail(f"`{' '.join(NPM_CI)}` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"[-2000:])
    signer = NodeSigner()
    yield signer
    signer.close()


def test_octokit_signed_github_deliveries_pass_and_tampered_ones_fail(proof, octokit):
    from exactly_once.flows.generic.github import GitHubAdapter

    adapter = GitHubAdapter(g.GITHUB_SECRET)
    seen = {"ok": 0, "tampered": 0, "wrong_secret": 0, "ours_verified": 0}

    def headers(body: bytes, signature: str) -> dict[str, str]:
        return {**g.github_headers(body, "delivery-1"), "x-hub-signature-256": signature}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=bodies, position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=127))
    def check(body: bytes, position: int, flip: int) -> None:
        signature = octokit.sign(body, g.GITHUB_SECRET)
        assert _passes(adapter, "/webhooks/github", body, headers(body, signature), {}), "octokit-signed, refused"
        seen["ok"] += 1
        i = position % len(body)
        tampered = body[:i] + bytes([body[i] ^ flip]) + body[i + 1 :]
        assert not _passes(adapter, "/webhooks/github", tampered, headers(tampered, signature), {}), (
            "one byte changed, still accepted"
        )
        seen["tampered"] += 1
        other = octokit.sign(body, GITHUB_OTHER)
        assert not _passes(adapter, "/webhooks/github", body, headers(body, other), {}), "another secret accepted"
        seen["wrong_secret"] += 1
        # The other direction: the signer the rest of the suite uses passes GitHub's own verifier.
        assert octokit.verify(body, g.GITHUB_SECRET, g.github_signature(body)), "octokit refuses our test signer"
        assert not octokit.verify(body, GITHUB_OTHER, g.github_signature(body))
        seen["ours_verified"] += 1

    check()
    proof.record(
        kind="signer",
        flow="github",
        name="signed by @octokit/webhooks-methods (GitHub's Octokit), random bodies",
        cases=seen["ok"] + seen["tampered"] + seen["wrong_secret"],
        held=(
            f"{seen['ok']} accepted; {seen['tampered']} one-byte changes and "
            f"{seen['wrong_secret']} other secrets refused; octokit's verify accepts the suite's own GitHub "
            f"signer on all {seen['ours_verified']} bodies"
        ),
    )
