"""The operations alarms and dashboard in template.yaml, read with the local stack's template reader."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from devstack.template import Template
from exactly_once.core.telemetry import Metric

CATALOGUE = {value for name, value in vars(Metric).items() if name.isupper()}
TOPIC_ACTION = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load()


def alarms(template: Template) -> dict[str, dict[str, Any]]:
    return {name: res["Properties"] for name, res in template.of_type("AWS::CloudWatch::Alarm").items()}


def expression(props: dict[str, Any]) -> str:
    returned = [m for m in props.get("Metrics", []) if m.get("ReturnData")]
    assert len(returned) == 1
    return str(returned[0]["Expression"])


def test_alarm_topic_is_an_optional_parameter(template):
    param = template.doc["Parameters"]["AlarmTopicArn"]
    assert param["Default"] == ""
    assert template.doc["Conditions"]["HasAlarmTopic"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}


def test_every_alarm_notifies_the_topic(template):
    found = alarms(template)
    assert found
    for name, props in found.items():
        assert props.get("AlarmActions") == TOPIC_ACTION, name


def test_every_dead_letter_queue_has_an_alarm_on_any_message(template):
    queues = template.of_type("AWS::SQS::Queue")
    dead_letter = {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in queues.values()
        if "RedrivePolicy" in q.get("Properties", {})
    }
    assert "EventsDeadLetterQueue" in dead_letter
    watched = {
        props["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for props in alarms(template).values()
        if props.get("Namespace") == "AWS/SQS"
        and props.get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and props["Threshold"] == 0
        and props["ComparisonOperator"] == "GreaterThanThreshold"
    }
    assert dead_letter <= watched, f"DLQs without an alarm: {sorted(dead_letter - watched)}"


@pytest.mark.parametrize(
    ("alarm", "function", "metric", "comparison"),
    [
        ("QuarantinedAlarm", "SUM", Metric.QUARANTINED, "GreaterThanThreshold"),
        ("ConstraintViolationsAlarm", "SUM", Metric.CONSTRAINT_RECOVERED, "GreaterThanThreshold"),
        ("StuckRowsAlarm", "MAX", Metric.STUCK_ROWS, "GreaterThanThreshold"),
        ("SignatureFailuresAlarm", "SUM", Metric.SIGNATURE_FAILURES, "GreaterThanOrEqualToThreshold"),
        ("ReapersFailedAlarm", "SUM", Metric.REAPERS_FAILED, "GreaterThanThreshold"),
    ],
)
def test_catalogue_alarms_watch_every_provider(template, alarm, function, metric, comparison):
    props = alarms(template)[alarm]
    query = expression(props)
    assert query.startswith(f"SELECT {function}({metric}) FROM SCHEMA(ExactlyOnce, provider, service)")
    assert props["ComparisonOperator"] == comparison
    assert props["TreatMissingData"] == "notBreaching"


def test_zero_tolerance_alarms_fire_on_the_first_one(template):
    found = alarms(template)
    for name in ("QuarantinedAlarm", "ConstraintViolationsAlarm", "StuckRowsAlarm", "ReapersFailedAlarm"):
        assert found[name]["Threshold"] == 0, name
    assert found["SignatureFailuresAlarm"]["Threshold"] == {"Ref": "SignatureFailureAlarmThreshold"}


def test_stuck_rows_are_alarmed_once_per_flow(template):
    # The send queue alarms its own StuckRows; the generic alarm leaves it out instead of paging twice.
    found = alarms(template)
    assert found["SendStuckRowsAlarm"]["Dimensions"][0]["Value"] == "send_queue"
    assert "WHERE provider != 'send_queue'" in expression(found["StuckRowsAlarm"])


def test_alarm_metrics_are_in_the_catalogue(template):
    for name, props in alarms(template).items():
        if props.get("Namespace") == "ExactlyOnce":
            assert props["MetricName"] in CATALOGUE, name
        for query in props.get("Metrics", []):
            for metric in re.findall(r"\b(?:SUM|MAX|AVG|MIN)\((\w+)\)", str(query.get("Expression", ""))):
                assert metric in CATALOGUE, (name, metric)


def dashboard_body(template: Template) -> tuple[dict[str, Any], set[str]]:
    (props,) = [r["Properties"] for r in template.of_type("AWS::CloudWatch::Dashboard").values()]
    text = props["DashboardBody"]["Fn::Sub"]
    refs = set(re.findall(r"\$\{([^}]+)\}", text))
    return json.loads(re.sub(r"\$\{[^}]+\}", "x", text)), refs


def test_dashboard_shows_the_catalogue(template):
    body, _ = dashboard_body(template)
    shown = set()
    for widget in body["widgets"]:
        for row in widget["properties"].get("metrics", []):
            for part in row:
                # the catalogue's metrics (namespace ExactlyOnce), not AWS's own (Lambda errors, ...)
                if isinstance(part, dict) and "SCHEMA(ExactlyOnce" in part.get("expression", ""):
                    shown.update(re.findall(r"\b(?:SUM|MAX)\((\w+)\)", part["expression"]))
    assert shown <= CATALOGUE
    wanted = {
        Metric.DELIVERIES,
        Metric.ACCEPTED,
        Metric.DUP_INGEST,
        Metric.DUP_QUEUE,
        Metric.DUP_DATABASE,
        Metric.CONSTRAINT_RECOVERED,
        Metric.QUARANTINED,
        Metric.OPEN_QUARANTINE,
        Metric.RECLAIMED,
        Metric.SENDS_UNKNOWN,
        Metric.STUCK_ROWS,
        Metric.LIFECYCLE,
        Metric.SIGNATURE_FAILURES,
        Metric.FAILED,
        Metric.REPLAYED,
    }
    assert wanted <= shown, f"not on the dashboard: {sorted(wanted - shown)}"


def test_dashboard_names_only_resources_that_exist(template):
    _, refs = dashboard_body(template)
    for ref in refs:
        logical = ref.split(".", 1)[0]
        assert logical.startswith("AWS::") or logical in template.resources, ref
    alarm_widgets = [w for w in dashboard_body(template)[0]["widgets"] if w["type"] == "alarm"]
    listed = {ref.split(".", 1)[0] for ref in refs if ref.endswith(".Arn")}
    assert alarm_widgets and listed == set(alarms(template)), "the alarm widget lists every alarm"
