"""The operator routes POST /jobs/{user_id}/trigger and GET /jobs/{user_id} against hostile user ids:
the right 4xx with a JSON error, never a 5xx, and no job row or queue message for a user with no mailbox."""

from __future__ import annotations

import json

import pytest

from devstack.lambda_runtime import LambdaContext, apigw_event, http_response

pytestmark = pytest.mark.slow

IDS = [
    "",
    " ",
    "nobody",
    "u" * 200,
    "u" * 201,
    "u" * 100_000,
    "a\x00b",
    "a\ud800b",
    "\U0001f600",
    "\u202eevil",
    "../../etc/passwd",
    "x'; DROP TABLE mailbox_jobs;--",
    "%00",
    "a/b",
    "null",
    "-1",
    "0",
    "1e400",
    "NaN",
    "\r\nSet-Cookie: x=1",
    "<script>",
    "user\t",
]


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_job_routes_answer_hostile_user_ids_with_4xx_json_and_create_nothing(stack, db, proof, method):
    handler = stack.handler("JobTriggerFunction")
    failures, statuses = [], {}
    for user_id in IDS:
        path = f"/jobs/{user_id}/trigger" if method == "POST" else f"/jobs/{user_id}"
        event = apigw_event(method, "http://local" + path.replace("?", "%3F"), b"", {}, {"user_id": user_id})
        try:
            status, _, body = http_response(handler(event, LambdaContext(function_name="JobTriggerFunction")))
        except Exception as exc:  # an unhandled exception is a 5xx from API Gateway
            failures.append(f"{user_id[:30]!r}: raised {type(exc).__name__}: {str(exc)[:120]}")
            continue
        statuses[status] = statuses.get(status, 0) + 1
        if not 400 <= status < 500:
            failures.append(f"{user_id[:30]!r}: {status} {body[:120]!r}")
        elif not json.loads(body).get("error"):
            failures.append(f"{user_id[:30]!r}: {status} without a JSON error")
    assert not failures, "\n".join(failures)
    made = db.execute("SELECT count(*) FROM mailbox_jobs").fetchone()[0]
    queued = stack.queue_depth("JobsQueue")
    assert (made, queued) == (0, 0)
    fivexx = sum(n for s, n in statuses.items() if s >= 500)
    proof.record(
        kind="hostile",
        flow="mailbox",
        name=f"{method} job route with hostile user ids",
        cases=sum(statuses.values()),
        held=f"{fivexx} x 5xx; statuses {dict(sorted(statuses.items()))}; {made} jobs, {queued} queue messages",
    )
