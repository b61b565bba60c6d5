"""Paging on failure: every function's Errors and Throttles, the API's 5xx, every queue's age, all on the dashboard.

Also the scaling settings that go with them: high-throughput FIFO on every FIFO queue, a
MaximumConcurrency on every SQS event source, reserved concurrency only when asked for.
"""

from __future__ import annotations

from typing import Any

import pytest

from devstack.template import Template


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load()


def alarms_on(template: Template, namespace: str, metric: str) -> dict[str, dict[str, Any]]:
    found = {}
    for name, res in template.of_type("AWS::CloudWatch::Alarm").items():
        props = res["Properties"]
        if props.get("Namespace") == namespace and props.get("MetricName") == metric:
            (dimension,) = props["Dimensions"]
            target = dimension["Value"].get("Ref") or dimension["Value"].get("Fn::GetAtt", [None])[0]
            found[target] = {"alarm": name, **props}
    return found


def dashboard_alarms(template: Template) -> str:
    (dashboard,) = template.of_type("AWS::CloudWatch::Dashboard").values()
    return str(dashboard["Properties"]["DashboardBody"]["Fn::Sub"])


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_has_its_errors_and_throttles_alarm_on_the_dashboard(template, metric):
    found = alarms_on(template, "AWS/Lambda", metric)
    missing = sorted(set(template.functions()) - set(found))
    assert not missing, f"add a {metric} alarm for {missing} (copy one of the '# Health' section)"
    body = dashboard_alarms(template)
    for props in found.values():
        assert props["Statistic"] == "Sum" and props["Threshold"] == 0
        assert f"${{{props['alarm']}.Arn}}" in body


def test_every_queue_alarms_on_its_oldest_message_and_dead_letters_before_they_expire(template):
    found = alarms_on(template, "AWS/SQS", "ApproximateAgeOfOldestMessage")
    queues = template.of_type("AWS::SQS::Queue")
    assert set(found) == set(queues)
    body = dashboard_alarms(template)
    for queue, props in found.items():
        retention = queues[queue]["Properties"]["MessageRetentionPeriod"]
        assert 0 < props["Threshold"] < retention  # paged before SQS deletes the message
        assert f"${{{props['alarm']}.Arn}}" in body


def test_api_5xx_alarm_is_on_the_webhook_api(template):
    found = alarms_on(template, "AWS/ApiGateway", "5xx")
    assert set(found) == {"WebhookApi"}
    assert "${ApiServerErrorsAlarm.Arn}" in dashboard_alarms(template)


def test_every_fifo_queue_is_high_throughput(template):
    for name, res in template.of_type("AWS::SQS::Queue").items():
        props = res["Properties"]
        assert props["FifoQueue"] is True, name
        # perMessageGroupId needs messageGroup; any other pair is normal throughput (SetQueueAttributes)
        assert (props["DeduplicationScope"], props["FifoThroughputLimit"]) == ("messageGroup", "perMessageGroupId")


def test_every_sqs_event_source_has_a_maximum_concurrency_parameter(template):
    for name, fn in template.functions().items():
        for event in (fn["Properties"].get("Events") or {}).values():
            if event["Type"] == "SQS":
                cap = event["Properties"]["ScalingConfig"]["MaximumConcurrency"]
                param = template.doc["Parameters"][cap["Ref"]]
                assert param["MinValue"] >= 2 and param["MaxValue"] <= 1000, name  # the API's range


def test_reserved_concurrency_is_off_by_default_and_every_reservation_follows_the_switch(template):
    assert template.parameter_default("ReservedConcurrency") == "false"
    for name, fn in template.functions().items():
        reserved = fn["Properties"].get("ReservedConcurrentExecutions")
        if reserved is not None:
            assert reserved["Fn::If"][0] == "UseReservedConcurrency", name
            assert template.resolve(reserved) is None, name  # with the defaults: nothing reserved


def test_tracing_is_a_parameter_on_every_function_and_on_in_prod(template):
    glob = template.doc["Globals"]["Function"]
    assert glob["Tracing"] == {"Ref": "Tracing"}
    assert "POWERTOOLS_TRACE_DISABLED" in glob["Environment"]["Variables"]
    for name, fn in template.functions().items():
        assert "Tracing" not in fn["Properties"], f"{name} overrides the Tracing parameter"
    from pathlib import Path

    prod = Path("samconfig.toml").read_text().split("[prod.deploy.parameters]", 1)[1]
    assert "Tracing=Active" in prod.split("[", 1)[0]


def test_the_migration_custom_resource_gives_up_before_an_hour(template):
    (schema,) = template.of_type("Custom::DatabaseSchema").values()
    timeout = schema["Properties"]["ServiceTimeout"]
    fn = template.functions()["DbMigrateFunction"]["Properties"]
    assert fn["Timeout"] < timeout <= 600
