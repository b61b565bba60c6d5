"""The local stack reads routes, event sources and schedules from the template; env.local.json merging."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from devstack import env_local
from devstack.routes import Route, http_routes, queue_sources, schedules
from devstack.schedule_timer import ScheduleExpressionError, next_delay
from devstack.template import Template

UTC = dt.UTC


def test_path_parameters_match_one_segment_and_proxy_is_greedy():
    route = Route("POST", "/jobs/{user_id}/trigger", "JobTriggerFunction")
    assert route.match("POST", "/jobs/u-1/trigger") == {"user_id": "u-1"}
    assert route.match("POST", "/jobs/a/b/trigger") is None
    assert route.match("GET", "/jobs/u-1/trigger") is None
    proxy = Route("ANY", "/files/{proxy+}", "F")
    assert proxy.match("DELETE", "/files/a/b/c") == {"proxy": "a/b/c"}


def test_literal_routes_win_over_parameters():
    doc = {
        "Resources": {
            "Api": {"Type": "AWS::Serverless::HttpApi", "Properties": {}},
            "A": _fn({"E": _http("GET", "/jobs/{user_id}")}),
            "B": _fn({"E": _http("GET", "/jobs/health")}),
        }
    }
    routes = http_routes(Template(doc))
    first = next(r for r in routes if r.match("GET", "/jobs/health") is not None)
    assert first.function == "B"


def test_authorizer_comes_from_the_api_definition():
    doc = {
        "Resources": {
            "Api": {
                "Type": "AWS::Serverless::HttpApi",
                "Properties": {
                    "Auth": {
                        "Authorizers": {
                            "Tok": {
                                "FunctionArn": {"Fn::GetAtt": ["AuthFn", "Arn"]},
                                "EnableSimpleResponses": True,
                                "Identity": {"Headers": ["Authorization"]},
                            }
                        }
                    }
                },
            },
            "Op": _fn({"E": _http("POST", "/sends", auth="Tok")}),
            "Hook": _fn({"E": _http("POST", "/webhooks/x")}),
        }
    }
    by_fn = {r.function: r for r in http_routes(Template(doc))}
    assert (by_fn["Op"].authorizer, by_fn["Op"].identity_headers) == ("AuthFn", ("authorization",))
    assert by_fn["Hook"].authorizer is None


def test_the_real_template_has_a_poller_per_sqs_source_and_its_schedules():
    template = Template.load()
    sources = {s.function: s for s in queue_sources(template)}
    worker = sources["EventWorkerFunction"]
    assert (worker.queue, worker.batch_size, worker.report_failures) == ("EventsQueue", 10, True)
    assert any(s.function == "ClaimReaperFunction" for s in schedules(template))


@pytest.mark.parametrize(
    ("expression", "now", "seconds"),
    [
        ("rate(1 minute)", dt.datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC), 60),
        ("rate(2 hours)", dt.datetime(2026, 1, 1, tzinfo=UTC), 7200),
        ("cron(0/15 * * * ? *)", dt.datetime(2026, 1, 1, 10, 7, tzinfo=UTC), 8 * 60),
        ("cron(0 9 ? * MON-FRI *)", dt.datetime(2026, 11, 21, 12, 0, tzinfo=UTC), (44 + 1) * 3600),  # Sat -> Mon 9:00
        ("cron(30 2 1 * ? *)", dt.datetime(2026, 1, 31, 2, 30, tzinfo=UTC), 24 * 3600),  # Feb 1st 02:30
    ],
)
def test_schedule_expressions(expression, now, seconds):
    assert next_delay(expression, now) == seconds


def test_unsupported_cron_features_fail_at_start():
    with pytest.raises(ScheduleExpressionError):
        next_delay("cron(0 12 L * ? *)", dt.datetime(2026, 1, 1, tzinfo=UTC))


def test_env_file_keeps_user_edits_and_follows_generated_values(tmp_path):
    path, record = tmp_path / "env.local.json", tmp_path / "generated.json"
    env_local.merge(path, {"Parameters": {"PORT_URL": "http://x:3000", "SECRET": "s1"}}, record)
    # the user puts a real secret in, and the stack moves to another port
    data = json.loads(path.read_text())
    data["Parameters"]["SECRET"] = "mine"
    path.write_text(json.dumps(data))
    merged = env_local.merge(
        path, {"Parameters": {"PORT_URL": "http://x:4000", "SECRET": "s2", "NEW": "n"}, "Fn": {"A": "1"}}, record
    )
    assert merged == {"Parameters": {"PORT_URL": "http://x:4000", "SECRET": "mine", "NEW": "n"}, "Fn": {"A": "1"}}
    assert env_local.function_env(merged, "Fn") == {"PORT_URL": "http://x:4000", "SECRET": "mine", "NEW": "n", "A": "1"}


def test_generated_secrets_keep_the_shape_of_the_example():
    standard = json.loads(env_local.dev_value("STANDARD_WEBHOOK_SECRETS", '{"acme": "whsec_abc"}'))
    assert list(standard) == ["acme"] and standard["acme"].startswith("whsec_")
    assert env_local.dev_value("LLM_MODEL", "test-analysis-model") == "test-analysis-model"
    assert env_local.dev_value("GRAPH_CLIENT_STATE", "x") != env_local.dev_value("GRAPH_CLIENT_STATE", "x")


def _fn(events):
    return {"Type": "AWS::Serverless::Function", "Properties": {"Handler": "m.handler", "Events": events}}


def _http(method, path, auth=None):
    props = {"ApiId": {"Ref": "Api"}, "Method": method, "Path": path}
    if auth:
        props["Auth"] = {"Authorizer": auth}
    return {"Type": "HttpApi", "Properties": props}
