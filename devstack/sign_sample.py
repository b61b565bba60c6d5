"""Re-sign a sample event of ``events/`` for now, with this machine's secrets, and print or post it.

The committed samples are signed with the test secrets at a fixed time, so the timestamped ones
(Standard Webhooks, Stripe, Slack) are stale by the time anyone sends them, and LiveKit's token, once
ten years long, is refused as an absurd lifetime (a webhook token lives five minutes). This signs the body
again the way the provider would::

    python -m devstack.sign_sample events/stripe_event.json > /tmp/stripe.json   # for sam local invoke
    python -m devstack.sign_sample events/slack_event_callback.json --post http://127.0.0.1:3000

Secrets come from ``env.local.json`` (``make run`` writes it; ``ENV_LOCAL_FILE`` moves it), else the environment.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devstack import env_local


def _hex(key: str, message: bytes) -> str:
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def resign(event: dict[str, Any], secrets: Mapping[str, str], now: int | None = None) -> dict[str, Any]:
    """The API Gateway event with its provider headers signed again for ``now``."""
    stamp = int(time.time()) if now is None else now
    path = str(event.get("rawPath") or "")
    body = str(event.get("body") or "").encode()
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if path == "/webhooks/unipile":
        header = (secrets.get("UNIPILE_WEBHOOK_HEADER") or "X-Webhook-Secret").lower()
        headers = {k: v for k, v in headers.items() if k != "x-webhook-secret"}
        headers[header] = secrets["UNIPILE_WEBHOOK_SECRET"]
    elif path.startswith("/webhooks/standard/"):
        source = path.rsplit("/", 1)[-1]
        secret = json.loads(secrets["STANDARD_WEBHOOK_SECRETS"])[source]
        secret = secret[0] if isinstance(secret, list) else secret
        key = base64.b64decode(secret.removeprefix("whsec_") + "==")
        webhook_id = headers.get("webhook-id") or f"msg_{stamp}"
        digest = hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
        headers |= {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        }
    elif path == "/webhooks/stripe":
        secret = secrets["STRIPE_WEBHOOK_SECRET"].replace(",", " ").split()[0]
        headers["stripe-signature"] = f"t={stamp},v1={_hex(secret, f'{stamp}.'.encode() + body)}"
    elif path == "/webhooks/github":
        headers["x-hub-signature-256"] = "sha256=" + _hex(secrets["GITHUB_WEBHOOK_SECRET"], body)
    elif path == "/webhooks/livekit":
        import jwt  # pyjwt, as the layer has it

        body_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
        claims = {"iss": secrets["LIVEKIT_API_KEY"], "sub": "", "nbf": stamp, "exp": stamp + 300, "sha256": body_hash}
        headers["authorization"] = jwt.encode(claims, secrets["LIVEKIT_API_SECRET"], algorithm="HS256")
    elif path == "/webhooks/slack":
        signature = _hex(secrets["SLACK_SIGNING_SECRET"], f"v0:{stamp}:".encode() + body)
        headers |= {"x-slack-request-timestamp": str(stamp), "x-slack-signature": f"v0={signature}"}
    else:
        raise ValueError(f"no signer for {path!r}")
    context = dict(event.get("requestContext") or {})
    context["timeEpoch"] = stamp * 1000
    return {**event, "headers": headers, "requestContext": context}


def post(base_url: str, event: Mapping[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(
        base_url.rstrip("/") + str(event["rawPath"]),
        data=str(event["body"]).encode(),
        headers=dict(event["headers"]),
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode() or str(answer.headers.get("x-exactly-once", ""))
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("event", type=Path, help="an API Gateway event from events/")
    parser.add_argument("--post", metavar="BASE_URL", help="send it to a running stack instead of printing it")
    args = parser.parse_args(argv)
    env_file = Path(os.environ.get("ENV_LOCAL_FILE") or env_local.ENV_FILE)
    secrets = {**os.environ, **env_local.load(env_file).get("Parameters", {})}
    try:
        event = resign(json.loads(args.event.read_text(encoding="utf-8")), secrets)
    except KeyError as exc:
        parser.error(f"secret {exc} is not in {env_file} nor the environment (make run writes the file)")
    if args.post:
        status, text = post(args.post, event)
        print(status, text)
        return 0 if status < 300 else 1
    json.dump(event, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
