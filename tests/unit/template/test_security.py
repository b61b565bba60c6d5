"""Issue 16 in template.yaml: the operator authorizer's caches are short; denials and not-configured answers page."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.template import Template


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load()


def alarm_on(template: Template, metric: str) -> tuple[str, dict[str, Any]]:
    found = [
        (name, res["Properties"])
        for name, res in template.of_type("AWS::CloudWatch::Alarm").items()
        if any(metric in str(m.get("Expression", "")) for m in res["Properties"].get("Metrics", []))
    ]
    assert len(found) == 1, f"one alarm on {metric}, found {[n for n, _ in found]}"
    return found[0]


def on_dashboard(template: Template, alarm: str) -> bool:
    (dashboard,) = template.of_type("AWS::CloudWatch::Dashboard").values()
    return f"${{{alarm}.Arn}}" in str(dashboard["Properties"]["DashboardBody"]["Fn::Sub"])


def test_a_revoked_operator_token_stops_working_within_two_minutes(template):
    # Two caches hold a token: API Gateway's authorizer cache (per Authorization header) and the function's
    # secret cache. Both at 60 s: a rotated-out token is refused at most 2 minutes after put-secret-value.
    (api,) = template.of_type("AWS::Serverless::HttpApi").values()
    identity = api["Properties"]["Auth"]["Authorizers"]["ApiToken"]["Identity"]
    assert 0 < identity["ReauthorizeEvery"] <= 60
    assert 0 < int(template.function_env("ApiAuthorizerFunction")["SECRETS_MAX_AGE"]) <= 60


def test_a_burst_of_operator_denials_pages(template):
    name, props = alarm_on(template, "OperatorRequestsDenied")
    (query,) = [m["Expression"] for m in props["Metrics"] if m.get("ReturnData")]
    assert "provider = 'operator'" in query and "SUM(" in query
    assert props["Threshold"] > 0 and on_dashboard(template, name)


def test_a_not_configured_answer_pages_at_once(template):
    # A webhook answered 503 not_configured is retried by its provider for a while, then dropped (issue 16)
    name, props = alarm_on(template, "NotConfigured")
    (query,) = [m["Expression"] for m in props["Metrics"] if m.get("ReturnData")]
    assert "SUM(NotConfigured)" in query and "WHERE" not in query  # every provider, the console included
    assert (props["Threshold"], props["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert on_dashboard(template, name)


def test_the_retention_windows_are_set_where_the_reaper_runs_and_respect_their_floors(template, monkeypatch):
    from exactly_once.ops import retention

    env = template.function_env("ClaimReaperFunction")
    for variable, _default, _floor in retention.WINDOWS.values():
        monkeypatch.setenv(variable, str(env[variable]))
    assert retention.windows()["event_log"] >= 15  # the deployed settings pass the reaper's own check
