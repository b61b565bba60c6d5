"""The fake Graph refuses what Graph and Entra ID refuse, before it counts a call, and answers only what
``$select`` names (issue 21): a client that forgets a field, a token or its credentials fails here too."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import urllib3

from devstack.fakes import Behaviour
from tests.graph_support import add_mail
from tests.harness import TEST_SECRETS

HTTP = urllib3.PoolManager(retries=False)  # urllib3 would honour Retry-After itself
BOX = "helpdesk@contoso.test"
FORM = {
    "grant_type": "client_credentials",
    "client_id": TEST_SECRETS["GRAPH_CLIENT_ID"],
    "client_secret": TEST_SECRETS["GRAPH_CLIENT_SECRET"],
    "scope": "https://graph.microsoft.com/.default",
}


def _token(stack: Any, **changes: str) -> tuple[int, Any]:
    body = urlencode({**FORM, **changes}).encode()
    answer = HTTP.request(
        "POST",
        f"{stack.fakes.url}/graph/token",
        body=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    return answer.status, json.loads(answer.data)


def _get(stack: Any, path: str, token: str | None = "fake-graph-token") -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer = HTTP.request("GET", f"{stack.fakes.url}/graph/v1.0{path}", headers=headers)
    return answer.status, json.loads(answer.data or b"null")


def test_the_token_endpoint_refuses_a_wrong_secret_grant_or_scope_and_counts_none(stack):
    assert _token(stack, client_secret="guessed")[0] == 401
    assert _token(stack, client_id="another-app")[0] == 401
    assert _token(stack, grant_type="password")[0] == 400
    assert _token(stack, scope="https://graph.microsoft.com/Mail.Read")[0] == 400
    assert stack.fakes.refused("graph.token") == 4 and stack.fakes.count("graph.token") == 0
    status, body = _token(stack)
    assert status == 200 and body["access_token"] == "fake-graph-token"
    assert stack.fakes.delivered("graph.token") == 1


def test_api_calls_without_the_issued_bearer_token_are_refused_not_effects(stack):
    add_mail(stack, "m1", "<m1@example.com>", user=BOX)
    assert _get(stack, f"/users/{BOX}/messages/m1", token=None)[0] == 401
    assert _get(stack, f"/users/{BOX}/messages/m1", token="forged")[0] == 401
    assert _get(stack, "/subscriptions", token="forged")[0] == 401
    assert _get(stack, f"/users/{BOX}/mailFolders/inbox/messages/delta", token=None)[0] == 401
    assert stack.fakes.refused("graph.get_message") == 2 and stack.fakes.count("graph.get_message") == 0
    assert stack.fakes.refused("graph.subscription.list") == 1 and stack.fakes.refused("graph.messages.delta") == 1
    assert stack.fakes.effects() == []


def test_select_decides_the_fields_answered(stack):
    add_mail(stack, "m1", "<m1@example.com>", user=BOX)
    status, chosen = _get(stack, f"/users/{BOX}/messages/m1?$select=subject,internetMessageId")
    assert status == 200 and set(chosen) == {"id", "subject", "internetMessageId"}
    # Without $select: Graph's default properties, which leave internetMessageHeaders out
    status, default = _get(stack, f"/users/{BOX}/messages/m1")
    assert status == 200 and "internetMessageHeaders" not in default and "subject" in default
    # A delta round keeps its $select on every page and in its delta link
    status, page = _get(stack, f"/users/{BOX}/mailFolders/inbox/messages/delta?$select=subject")
    assert status == 200 and [set(m) for m in page["value"]] == [{"id", "subject"}]
    add_mail(stack, "m2", "<m2@example.com>", user=BOX)
    link = page["@odata.deltaLink"]
    status, later = _get(stack, link if link.startswith("/users") else link.split("/graph/v1.0", 1)[1])
    assert status == 200 and [set(m) for m in later["value"]] == [{"id", "subject"}]


def test_a_throttled_or_failed_call_is_an_attempt_not_an_effect(stack):
    add_mail(stack, "m1", "<m1@example.com>", user=BOX)
    stack.fakes.behaviours["graph.throttle"] = Behaviour(fail_times=1, fail_status=429)
    stack.fakes.behaviours["graph.get_message"] = Behaviour(fail_times=1, fail_status=503)
    assert _get(stack, f"/users/{BOX}/messages/m1")[0] == 429
    assert _get(stack, f"/users/{BOX}/messages/m1")[0] == 503
    assert _get(stack, f"/users/{BOX}/messages/m1")[0] == 200
    assert stack.fakes.count("graph.get_message") == 3 and stack.fakes.delivered("graph.get_message") == 1
